"""A throw-away ClickHouse server for the tests: its own config, data folder and ports.

The server is Debian's ``clickhouse-server`` package (18.16, the only one a package registry
offers; ``.ci/run`` installs it). It is older than CVAT's DDL needs (no ``DateTime64``, no
``TTL``), so it also exercises the schema's legacy flavor.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SERVER = shutil.which("clickhouse-server") or "/usr/sbin/clickhouse-server"

_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{root}/server.log</log><errorlog>{root}/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <timezone>UTC</timezone>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default/></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></default>
    <cvat><password>{password}</password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></cvat>
  </users>
  <quotas><default/></quotas>
</yandex>
"""

USER = "cvat"
PASSWORD = "clickhouse-secret"


@dataclass
class ClickHouse:
    root: Path
    port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers."""
        from clickhouse_driver import Client

        log = (self.root / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [SERVER, f"--config-file={self.root / 'config.xml'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                # the port first: the driver logs a traceback for every refused connection
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                Client("127.0.0.1", port=self.port, connect_timeout=1).execute("SELECT 1")
                return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.root / "stdout.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"clickhouse-server did not start: {tail}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None


def start(root: Path, port: int, http_port: int) -> ClickHouse:
    for name in ("data", "tmp", "user_files", "format_schemas"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "config.xml").write_text(_CONFIG.format(root=root, port=port, http_port=http_port))
    (root / "users.xml").write_text(_USERS.format(password=PASSWORD))
    server = ClickHouse(root, port, http_port)
    server.start()
    return server
