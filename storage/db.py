"""Engines and sessions for SQLite (embedded default) and PostgreSQL (psycopg2).

The driver is synchronous: use these sessions from plain ``def`` code (FastAPI runs such
handlers in its threadpool) and never from inside an ``async def``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

logger = logging.getLogger("cvat_ray.db")

_AFTER_COMMIT = "cvat_ray_after_commit"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the session's transaction has committed (dropped on rollback): how a
    service hands work to a background worker only when the rows it needs are visible."""
    session.info.setdefault(_AFTER_COMMIT, []).append(fn)


def run_after_commit(session: Session) -> None:
    for fn in session.info.pop(_AFTER_COMMIT, []):
        try:
            fn()
        except Exception:  # the commit stands; a lost hand-over is picked up by a sweep
            logger.exception("after-commit hook failed")


def drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer commits; foreign keys are off by default in SQLite
    # and our cascades rely on them.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    # No pre-ping: it is one more round trip per request. Connections are recycled hourly,
    # and one that broke (a database restart) fails its request with a 503 and is dropped.
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=3600,
    )


def forked_session(parent: Session) -> Session:
    """In a forked child process: a session on a connection of its own to ``parent``'s
    database. The parent's session (and the connection it shares with the parent process)
    must stay referenced and unused: freeing it would end the parent's connection through
    the shared socket."""
    return Session(create_engine(parent.get_bind().engine.url, poolclass=NullPool))


class Database:
    """An engine plus its session factory; one per process (or per test database)."""

    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, echo=echo)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        # For requests that only read: no BEGIN/COMMIT round trips.
        self.autocommit_session_factory = sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any exception."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            drop_after_commit(session)
            raise
        finally:
            session.close()
        run_after_commit(session)

    def dispose(self) -> None:
        self.engine.dispose()
