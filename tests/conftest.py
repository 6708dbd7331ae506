"""Shared fixtures: real databases (SQLite and PostgreSQL), the app, clients, users.

Every test that takes ``db`` runs twice: on a SQLite file and on a PostgreSQL database
created for this test session on ``CVAT_RAY_TEST_PG_URL`` (default: the local server's
``test`` database, whose role may create databases). Tables are emptied after each test.
In CI (``CI=true``) a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.migrate import upgrade
from cvat_ray.storage.models import Base
from cvat_ray.storage.services.authn import start_session
from cvat_ray.storage.services.users import create_user

PG_URL = os.environ.get(
    "CVAT_RAY_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PASSWORD = "Secret-pass-123"

# Storage emulators (S3, Azure Blob, GCS) for cloud storage tests; the session Ray cluster.
pytest_plugins = ["tests.cloud_servers", "tests.ray_cluster"]


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # the reason is shown in the skip message
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    problem = _pg_available()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {problem}")
        pytest.skip(f"PostgreSQL not available: {problem}")
    name = f"cvat_ray_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def new_pg_database(base_url: str) -> str:
    """Another empty database next to ``base_url`` (for migration tests)."""
    name = f"cvat_ray_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path = tmp_path_factory.mktemp("sqlite") / "cvat.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def postgresql_db(pg_server_url: str) -> Iterator[Database]:
    db = Database(pg_server_url, pool_size=10)
    upgrade(db.engine)
    yield db
    db.dispose()


# Seeded by the initial migration; kept between tests.
_KEEP = {"groups", "alembic_version"}


def _empty_tables(db: Database) -> None:
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t.name not in _KEEP]
    for attempt in range(3):
        try:
            with db.engine.begin() as conn:
                if db.dialect == "postgresql":
                    names = ", ".join(f'"{t.name}"' for t in tables)
                    conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
                else:
                    for table in tables:
                        conn.execute(table.delete())
            return
        except OperationalError as exc:
            # a previous test's background job still finishing its transaction can
            # deadlock with TRUNCATE's table locks: PostgreSQL aborts one side; go again
            if "deadlock" not in str(exc) or attempt == 2:
                raise
            time.sleep(0.5)


@pytest.fixture(autouse=True)
def _no_late_events() -> Iterator[None]:
    """Apps of tests are never shut down: stop their cache item event writers at the end of
    each test (dropping what they hold), so none writes into a later test's database."""
    yield
    from cvat_ray.storage.events.deferred import close_all

    close_all(write=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    database: Database = request.getfixturevalue(f"{request.param}_db")
    _empty_tables(database)
    yield database
    _empty_tables(database)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def app(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
    return build_app(settings, db)


@dataclass
class Account:
    id: int
    username: str
    token: str  # a token session's key, sent as ``Authorization: Token <key>``


def make_account(db: Database, username: str, groups: tuple[str, ...] = ("user",)) -> Account:
    with db.session() as session:
        user = create_user(
            session,
            username=username,
            password=PASSWORD,
            email=f"{username}@example.com",
            groups=groups,
            is_superuser="admin" in groups,
        )
        login = start_session(session, user, 3600, "token")
        return Account(id=user.id, username=username, token=login.key)


@pytest.fixture
def make_user(db: Database):  # type: ignore[no-untyped-def]
    def factory(username: str, *groups: str) -> Account:
        return make_account(db, username, groups or ("user",))

    return factory


@pytest.fixture
async def anon(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def client_for(app) -> AsyncIterator:  # type: ignore[no-untyped-def,type-arg]
    """``client_for(account)``: an AsyncClient authenticated as that account."""
    clients: list[httpx.AsyncClient] = []

    def factory(account: Account) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Token {account.token}"},
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
def admin(make_user) -> Account:  # type: ignore[no-untyped-def]
    return make_user("admin1", "admin")  # type: ignore[no-any-return]


@pytest.fixture
def alice(make_user) -> Account:  # type: ignore[no-untyped-def]
    return make_user("alice", "user")  # type: ignore[no-any-return]


@pytest.fixture
def bob(make_user) -> Account:  # type: ignore[no-untyped-def]
    return make_user("bob", "user")  # type: ignore[no-any-return]
