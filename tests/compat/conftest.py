"""A real HTTP server (uvicorn, in a thread) over the test databases, for cvat-sdk/cvat-cli."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from cvat_ray.cluster.runtime import free_port
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from tests.conftest import PASSWORD, Account, _empty_tables, make_account


@dataclass
class LiveServer:
    url: str
    db: Database
    settings: Settings
    admin: Account
    user: Account
    password: str = PASSWORD


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    db: Database = request.getfixturevalue(f"{request.param}_db")
    _empty_tables(db)
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("compat-data")))
    # A file share and a loopback allow-list, for share and remote_files uploads.
    settings.media.share_root = Path(tmp_path_factory.mktemp("compat-share"))
    settings.media.remote_allowlist = "127.0.0.1/32"
    app = build_app(settings, db)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(
            url=f"http://127.0.0.1:{port}",
            db=db,
            settings=settings,
            admin=make_account(db, "sdkadmin", ("admin",)),
            user=make_account(db, "sdkuser", ("user",)),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        _empty_tables(db)
