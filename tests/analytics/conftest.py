"""The ClickHouse fixtures: a real server of the tests' own, and the embedded chdb."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvat_ray.cluster.runtime import free_port
from cvat_ray.cluster.settings import AnalyticsSettings, Settings
from tests.analytics import clickhouse
from tests.conftest import IN_CI


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[clickhouse.ClickHouse]:
    if not Path(clickhouse.SERVER).exists():
        message = "clickhouse-server is not installed (apt-get install clickhouse-server)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = clickhouse.start(tmp_path_factory.mktemp("clickhouse"), free_port(), free_port())
    yield server
    server.stop()


def server_settings(server: clickhouse.ClickHouse, **extra: object) -> AnalyticsSettings:
    """Settings for a database of its own on the test server (one per test)."""
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": clickhouse.USER,
        "password": clickhouse.PASSWORD,
        "database": f"t_{uuid.uuid4().hex[:12]}",
        "flush_interval_s": 0.1,
        **extra,
    }
    return AnalyticsSettings.model_validate(values)


@pytest.fixture(params=["chdb", "server"])
def engine(request: pytest.FixtureRequest) -> str:
    """Runs a test on the embedded chdb and on the ClickHouse server."""
    return str(request.param)


@pytest.fixture
def analytics_settings(engine: str, request: pytest.FixtureRequest) -> AnalyticsSettings:
    if engine == "server":
        return server_settings(request.getfixturevalue("clickhouse_server"))
    return AnalyticsSettings(database=f"t_{uuid.uuid4().hex[:12]}", flush_interval_s=0.1)


@pytest.fixture
def settings(tmp_path: Path, analytics_settings: AnalyticsSettings) -> Settings:
    """The app's settings (``tests/conftest.py``), with this test's events store."""
    return Settings(data_dir=tmp_path / "data", analytics=analytics_settings)


@pytest.fixture(autouse=True)
def _fresh_names() -> Iterator[None]:
    """Each test's database starts its ids again: forget the cached e-mails and slugs."""
    from cvat_ray.storage.events.outbox import names

    names.clear()
    yield
    names.clear()
