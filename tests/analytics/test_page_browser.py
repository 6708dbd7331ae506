"""The built-in analytics page in a real headless Chromium: it signs in, loads, draws its
charts from real events (posted to a live server and drained by its sink thread), filters,
and refuses a user without analytics access."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cvat_ray.cluster.runtime import free_port
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from tests.conftest import IN_CI, PASSWORD, make_account

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("browser.mjs")
PLAYWRIGHT = ROOT / ".tools" / "playwright" / "node_modules" / "playwright-core"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.slow


def _tools() -> None:
    missing = [
        what
        for what, ok in (
            ("chromium (apt-get install chromium)", Path(CHROMIUM).exists()),
            ("node", shutil.which("node") is not None),
            ("playwright-core in .tools/playwright (npm)", PLAYWRIGHT.is_dir()),
        )
        if not ok
    ]
    if missing:
        message = "missing for the browser test: " + ", ".join(missing)
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def live(db: Database, settings: Settings) -> Iterator[str]:
    _tools()
    app = build_app(settings, db)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _browse(url: str, user: str, shot: Path, expect: str) -> dict[str, Any]:
    env = {**os.environ, "PLAYWRIGHT_CORE_DIR": str(PLAYWRIGHT), "CHROMIUM": CHROMIUM}
    done = subprocess.run(
        ["node", str(SCRIPT), url, user, PASSWORD, str(shot), expect],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _post(url: str, token: str, body: dict[str, object]) -> None:
    r = httpx.post(f"{url}/api/events", json=body, headers={"Authorization": f"Token {token}"})
    assert r.status_code == 201, r.text


def test_the_page_in_chromium(live: str, db: Database, tmp_path: Path) -> None:
    admin = make_account(db, "boss", ("admin",))
    alice = make_account(db, "alice", ("user",))
    make_account(db, "nosy", ("user",))
    now = datetime.now(UTC)

    def at(seconds: float) -> str:
        return (now - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    for account, job in ((alice, 11), (admin, 12)):
        events = [
            {"scope": "load:job", "timestamp": at(3600), "job_id": job, "task_id": 5},
            *(
                {
                    "scope": "draw:object",
                    "timestamp": at(3600 - 20 * i),
                    "job_id": job,
                    "task_id": 5,
                }
                for i in range(1, 30)
            ),
            {
                "scope": "change:frame",
                "timestamp": at(1800),
                "job_id": job,
                "task_id": 5,
                "count": 9,
                "duration": 40_000,
            },
            {
                "scope": "send:exception",
                "timestamp": at(600),
                "job_id": job,
                "payload": json.dumps({"message": f"client failure of {account.username}"}),
            },
        ]
        _post(live, account.token, {"events": events, "timestamp": at(0)})

    shot = tmp_path / "analytics.png"
    result = _browse(live, "boss", shot, "charts")
    assert result["errors"] == []
    series = {s["name"]: s["points"] for s in result["series"]}
    assert series.get("client", 0) >= 2 and series.get("server", 0) >= 1
    assert int(result["bars"]) >= 4
    users = {row[0] for row in result["working"]}
    assert users == {"alice", "boss"}
    assert sorted(result["exceptions"]) == [
        "client failure of alice",
        "client failure of boss",
    ]
    assert result["filtered"] == 1
    assert shot.stat().st_size > 10_000
    if os.environ.get("ANALYTICS_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["ANALYTICS_SCREENSHOT"])

    denied = _browse(live, "nosy", tmp_path / "denied.png", "denied")
    assert denied["denied"] is True and denied["charts"] is False
