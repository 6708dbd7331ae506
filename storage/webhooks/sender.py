"""The webhook sender: from the outbox to the receivers, Ray-free.

One round (:meth:`WebhookSender.run_once`):

1. **claim** due deliveries, by webhook (again as soon as a webhook's batch is recorded,
   in the same transaction as the batches that finished, at most every
   ``webhooks.claim_interval_s``): the webhooks with due rows are locked with
   ``SELECT … FOR NO KEY UPDATE SKIP LOCKED`` on PostgreSQL (two senders never work on one webhook
   at once); SQLite has one writer, and the claim is a conditional UPDATE. Of each webhook,
   the oldest pending rows are taken in ``id`` order up to the first that is not due (a
   retry waiting for its time holds the later ones back: a webhook's deliveries arrive in
   the order they were written) and leased to this sender (``claimed_by``,
   ``claimed_until``), so a sender that dies mid-batch leaves them to the next one.
2. **send** each webhook's rows one after the other, webhooks concurrently (a slow receiver
   holds back its own webhook only), over a pooled
   httpx client whose every connection goes through the outbound guard
   (:meth:`cvat_ray.cluster.outbound.OutboundGuard.httpx_client`).
3. **record** each attempt on the row: ``delivered`` (2xx); retried later (5xx, 408, 429, a
   connection error or timeout, a name that does not resolve) after the webhook's delay for
   that retry with random jitter, until its retries are spent: then ``dead``; ``dead`` at
   once for anything else (other 3xx/4xx, an address the guard refuses).

Delivery is at least once: a sender killed between sending and recording sends the row
again, with the same ``X-Webhook-Delivery`` id, so receivers de-duplicate on it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import hmac
import logging
import math
import random
import select as select_module
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx
from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    or_,
    select,
    union_all,
    update,
)

from cvat_ray.cluster.outbound import OutboundGuard, OutboundRefused, Unresolvable
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Webhook, utcnow
from cvat_ray.storage.webhooks.outbox import DELIVERIES, NOTIFY_CHANNEL

logger = logging.getLogger("cvat_ray.webhooks.sender")


def _version() -> str:
    try:
        return version("cvat-ray")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0"


USER_AGENT = f"CVAT-compatible cvat-ray/{_version()}"
MAX_RESPONSE_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
_RETRIED_STATUSES = frozenset({408, 429})
# pruning runs at most this often
_PRUNE_EVERY_S = 3600.0


def signature(secret: str, body: bytes) -> str:
    """``X-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Outgoing:
    """One attempt to make: the delivery and its webhook."""

    id: int
    uid: str
    webhook_id: int
    event: str
    body: str
    # the number of this attempt (1 for the first)
    attempt: int
    target_url: str
    secret: str
    enable_ssl: bool
    max_retries: int
    delays: tuple[float, ...]


@dataclass(frozen=True)
class Outcome:
    """What one attempt got."""

    status_code: int | None
    response: str
    duration_ms: int
    delivered: bool
    retry: bool


# a sent batch: the attempts made, and the rows not tried (given back)
Sent = tuple[list[tuple[Outgoing, Outcome]], list[Outgoing]]


def _webhook_of(results: list[tuple[Outgoing, Outcome]], unsent: list[Outgoing]) -> int | None:
    """The webhook of a sent batch (all its rows are one webhook's)."""
    first = results[0][0] if results else (unsent[0] if unsent else None)
    return first.webhook_id if first is not None else None


def headers(item: Outgoing, body: bytes) -> dict[str, str]:
    out = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Delivery": item.uid,
        "X-Webhook-Attempt": str(item.attempt),
    }
    if item.secret:
        out["X-Signature-256"] = signature(item.secret, body)
    return out


class Transport:
    """The sender's HTTP clients (one verifying TLS, one not, for ``enable_ssl=false``),
    pooled, built lazily, every connection through the outbound guard."""

    def __init__(self, guard: OutboundGuard, max_connections: int = 32) -> None:
        self.guard = guard
        self.max_connections = max_connections
        self._clients: dict[bool, httpx.Client] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Transport:
        return cls(OutboundGuard.from_settings(settings), settings.webhooks.concurrency * 2)

    def client(self, verify: bool) -> httpx.Client:
        with self._lock:
            client = self._clients.get(verify)
            if client is None:
                client = self.guard.httpx_client(
                    verify=verify,
                    timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                    max_connections=self.max_connections,
                )
                self._clients[verify] = client
            return client

    def send(self, item: Outgoing) -> Outcome:
        body = item.body.encode()
        started = time.monotonic()

        def done(code: int | None, text: str, *, delivered: bool, retry: bool) -> Outcome:
            ms = int((time.monotonic() - started) * 1000)
            return Outcome(code, text, ms, delivered, retry)

        try:
            with self.client(item.enable_ssl).stream(
                "POST", item.target_url, content=body, headers=headers(item, body)
            ) as response:
                text = _capped(response)
                code = response.status_code
        except Unresolvable as exc:
            return done(None, str(exc), delivered=False, retry=True)
        except OutboundRefused as exc:
            return done(None, f"Refused: {exc}", delivered=False, retry=False)
        except httpx.TooManyRedirects as exc:
            return done(None, f"Too many redirects: {exc}", delivered=False, retry=False)
        except httpx.TimeoutException as exc:
            return done(504, f"Timed out: {exc or type(exc).__name__}", delivered=False, retry=True)
        except (httpx.TransportError, OSError) as exc:
            return done(
                502, f"Cannot connect: {exc or type(exc).__name__}", delivered=False, retry=True
            )
        except httpx.InvalidURL as exc:
            return done(None, f"Invalid URL: {exc}", delivered=False, retry=False)
        ok = 200 <= code < 300
        retry = code >= 500 or code in _RETRIED_STATUSES
        return done(code, text, delivered=ok, retry=retry)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def _capped(response: httpx.Response) -> str:
    """The response body as text, or "" when it is larger than 1 MiB (as CVAT stores it)."""
    data = bytearray()
    for block in response.iter_bytes():
        data += block
        if len(data) > MAX_RESPONSE_BYTES:
            return ""
    return bytes(data).decode("utf-8", errors="replace")


def retry_delay(item: Outgoing, jitter: float, rng: random.Random) -> float:
    """The delay before the retry that follows attempt ``item.attempt``, with jitter."""
    base = item.delays[min(item.attempt - 1, len(item.delays) - 1)]
    return max(0.0, base * (1 + rng.uniform(-jitter, jitter)))


# ----------------------------------------------------------------------------- the outbox
#
# Every statement below is built once (SQLAlchemy memoizes a statement's cache key, so a
# claim cycle compiles nothing) and runs on a plain Connection (no ORM layer): at a trickle
# of commits the sender claims and records tens of times a second, next to the API.

_D = DELIVERIES.c
_W = Webhook.__table__.c
_NOW = bindparam("now", type_=_D.claimed_until.type)
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
_FREE = or_(_D.claimed_until.is_(None), _D.claimed_until < _NOW)
# the webhooks with due, free rows (the oldest first, at most 256 a claim), with what their
# batches need
_DUE_WEBHOOKS = (
    select(
        _W.id,
        _W.target_url,
        _W.secret,
        _W.enable_ssl,
        _W.is_active,
        _W.max_retries,
        _W.retry_delays,
    )
    .where(
        _W.id.in_(
            select(_D.webhook_id)
            .where(_D.status == "pending", _D.next_attempt_at <= _NOW, _FREE)
            .group_by(_D.webhook_id)
            .order_by(func.min(_D.id))
            .limit(256)
        )
    )
    .order_by(_W.id)
)
# FOR NO KEY UPDATE: senders exclude each other, while the API's transactions that insert
# deliveries (their foreign key takes FOR KEY SHARE) neither wait nor are skipped
_LOCK_DUE_WEBHOOKS = _DUE_WEBHOOKS.with_for_update(skip_locked=True, key_share=True)
_LEASE = (
    update(DELIVERIES)
    .where(_D.id.in_(_IDS), _D.status == "pending", _FREE)
    .values(claimed_by=bindparam("worker"), claimed_until=bindparam("lease"))
)
_UNLEASE = (
    update(DELIVERIES)
    .where(_D.id.in_(_IDS), _D.claimed_by == bindparam("worker"))
    .values(claimed_by=None, claimed_until=None)
)
_BURY = (
    update(DELIVERIES)
    .where(_D.id.in_(_IDS))
    .values(
        status="dead",
        response=bindparam("reason"),
        claimed_by=None,
        claimed_until=None,
        updated_date=_NOW,
    )
)


def _recorded(column: str) -> Any:
    """The UPDATE that records attempts (executed for many rows at once): ``status`` for
    the finished, ``next_attempt_at`` for the retried."""
    varying = ("attempt", "status_code", "response", "request_duration", column)
    return (
        update(DELIVERIES)
        .where(
            _D.id == bindparam("b_id"),
            _D.claimed_by == bindparam("b_worker"),
            _D.status == "pending",
        )
        .values(
            {name: bindparam(f"b_{name}") for name in varying}
            | {
                "updated_date": bindparam("b_now"),
                "claimed_by": None,
                "claimed_until": None,
            }
        )
    )


_RECORD_FINISHED = _recorded("status")
_RECORD_RETRY = _recorded("next_attempt_at")
_RELEASE = (
    update(DELIVERIES)
    .where(_D.claimed_by == bindparam("worker"), _D.status == "pending")
    .values(claimed_by=None, claimed_until=None)
)
_NEXT_DUE = select(func.min(_D.next_attempt_at)).where(_D.status == "pending")
_PRUNE = delete(DELIVERIES).where(
    _D.status.in_(("delivered", "dead")), _D.created_date < bindparam("before")
)


@functools.lru_cache(maxsize=64)
def _oldest(webhooks: int, limit: int) -> Any:
    """Each of ``webhooks`` webhooks' (``w0``, ``w1``, ... ) oldest pending rows, at most
    ``limit`` each, in one statement (an index range per webhook)."""
    columns = (
        _D.id,
        _D.uid,
        _D.webhook_id,
        _D.event,
        _D.body,
        _D.attempt,
        _D.next_attempt_at,
        _D.claimed_until,
    )
    parts = [
        select(
            select(*columns)
            .where(_D.webhook_id == bindparam(f"w{n}"), _D.status == "pending")
            .order_by(_D.id)
            .limit(limit)
            .subquery()
        )
        for n in range(webhooks)
    ]
    return parts[0] if webhooks == 1 else union_all(*parts)


def claim(
    conn: Connection, worker: str, settings: Settings, busy: set[int] | None = None
) -> list[list[Outgoing]]:
    """Lease the due deliveries of each webhook to ``worker`` (see the module docstring).
    ``busy`` gets the webhooks with due rows left behind a leased one (a batch in flight):
    their sender claims again when that batch is recorded."""
    now = utcnow()
    locking = _LOCK_DUE_WEBHOOKS if conn.dialect.name == "postgresql" else _DUE_WEBHOOKS
    webhooks = {w.id: w for w in conn.execute(locking, {"now": now})}
    if not webhooks:
        return []
    oldest = _oldest(len(webhooks), settings.webhooks.batch_size)
    rows = conn.execute(oldest, {f"w{n}": w for n, w in enumerate(webhooks)}).all()
    by_webhook: dict[int, list[Any]] = {}
    for row in sorted(rows, key=lambda r: (r.webhook_id, r.id)):
        by_webhook.setdefault(row.webhook_id, []).append(row)
    lease = now + timedelta(seconds=settings.webhooks.lease_s)
    taken: dict[int, list[Any]] = {}
    for webhook_id, pending in by_webhook.items():
        for row in pending:
            if row.claimed_until is not None and row.claimed_until >= now:
                if busy is not None:
                    busy.add(webhook_id)
                break  # leased, in flight: the later rows wait for it
            if row.next_attempt_at > now:
                break  # the oldest waits: so do the later ones
            taken.setdefault(webhook_id, []).append(row)
    idle = [r.id for w, t in taken.items() if not webhooks[w].is_active for r in t]
    if idle:
        _bury(conn, idle, "The webhook is not active.")
    taken = {w: t for w, t in taken.items() if webhooks[w].is_active}
    ids = [r.id for t in taken.values() for r in t]
    if not ids:
        return []
    leased = conn.execute(_LEASE, {"ids": ids, "now": now, "worker": worker, "lease": lease})
    if leased.rowcount != len(ids):
        # raced with another claimer (SQLite, several processes): give them back, try later
        conn.execute(_UNLEASE, {"ids": ids, "worker": worker})
        return []
    batches: list[list[Outgoing]] = []
    for webhook_id, chosen in taken.items():
        webhook = webhooks[webhook_id]
        delays = tuple(webhook.retry_delays or settings.webhooks.retry_delays)
        max_retries = (
            webhook.max_retries
            if webhook.max_retries is not None
            else settings.webhooks.max_retries
        )
        batches.append(
            [
                Outgoing(
                    id=r.id,
                    uid=r.uid,
                    webhook_id=webhook_id,
                    event=r.event,
                    body=r.body,
                    attempt=r.attempt + 1,
                    target_url=webhook.target_url,
                    secret=webhook.secret or "",
                    enable_ssl=webhook.enable_ssl,
                    max_retries=max_retries,
                    delays=delays,
                )
                for r in chosen
            ]
        )
    return batches


def _bury(conn: Connection, ids: Sequence[int], reason: str) -> None:
    conn.execute(_BURY, {"ids": list(ids), "reason": reason, "now": utcnow()})


def record(
    conn: Connection,
    worker: str,
    results: Iterable[tuple[Outgoing, Outcome]],
    unsent: Iterable[Outgoing],
    settings: Settings,
    rng: random.Random,
) -> None:
    """Write what each attempt got, and give back the leases of rows not tried."""
    now = utcnow()
    finished: list[dict[str, object]] = []
    retries: list[dict[str, object]] = []
    for item, outcome in results:
        row: dict[str, object] = {
            "b_id": item.id,
            "b_worker": worker,
            "b_now": now,
            "b_attempt": item.attempt,
            "b_status_code": outcome.status_code,
            "b_response": outcome.response,
            "b_request_duration": outcome.duration_ms,
        }
        if outcome.delivered:
            finished.append(row | {"b_status": "delivered"})
        elif outcome.retry and item.attempt <= item.max_retries:
            delay = retry_delay(item, settings.webhooks.retry_jitter, rng)
            retries.append(row | {"b_next_attempt_at": now + timedelta(seconds=delay)})
        else:
            finished.append(row | {"b_status": "dead"})
    # one statement for the finished rows and one for the retried, each executed for all
    # their rows at once (executemany)
    for rows, statement in ((finished, _RECORD_FINISHED), (retries, _RECORD_RETRY)):
        if rows:
            conn.execute(statement, rows)
    left = [item.id for item in unsent]
    if left:
        conn.execute(_UNLEASE, {"ids": left, "worker": worker})


def release(conn: Connection, worker: str) -> int:
    """Give back what ``worker`` holds (a sender that has just (re)started: its previous
    process died holding them; they are sent again, with the same delivery ids)."""
    return int(conn.execute(_RELEASE, {"worker": worker}).rowcount)


def next_due(conn: Connection) -> datetime | None:
    """When the earliest pending delivery falls due."""
    return conn.execute(_NEXT_DUE).scalar()


def prune(conn: Connection, older_than: datetime) -> int:
    """Delete delivered and dead deliveries created before ``older_than``."""
    return int(conn.execute(_PRUNE, {"before": older_than}).rowcount)


# ----------------------------------------------------------------------------- wake-ups


class Listener:
    """PostgreSQL: wakes the sender on the outbox's ``NOTIFY`` (sent by each commit that
    wrote deliveries, :data:`~cvat_ray.storage.webhooks.outbox.NOTIFY_CHANNEL`), on a
    connection of its own outside the pool. The committing process makes no call for it (a
    Ray call per wake-up cost the API ~0.8 ms of CPU). While the connection is down it
    reconnects every second; the sender's sweep covers the gap, and each (re)connection
    wakes the sender once, for what was committed meanwhile. Wake-ups are at least
    ``min_interval_s`` apart (the notifications of a burst are read together): the sender
    claims no more often than that anyway."""

    def __init__(
        self, engine: Engine, wake: Callable[[], None], name: str, min_interval_s: float = 0.0
    ) -> None:
        self.engine = engine
        self.wake = wake
        self.min_interval_s = min_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _connect(self) -> Any:
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return connection

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection = self._connect()
            except Exception as exc:  # the database is away: try again
                logger.debug("webhook listener cannot connect: %s", exc)
                self._stop.wait(1.0)
                continue
            try:
                self.wake()
                while not self._stop.is_set():
                    readable, _, _ = select_module.select([connection], [], [], 1.0)
                    if not readable:
                        continue
                    connection.poll()
                    if connection.notifies:
                        connection.notifies.clear()
                        self.wake()
                        if self.min_interval_s > 0:
                            self._stop.wait(self.min_interval_s)
            except Exception as exc:  # the connection broke: reconnect
                logger.debug("webhook listener lost its connection: %s", exc)
                self._stop.wait(1.0)
            finally:
                with contextlib.suppress(Exception):
                    connection.close()


# ----------------------------------------------------------------------------- the loop


@dataclass
class Stats:
    rounds: int = 0
    sent: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    pruned: int = 0
    last_error: str = ""
    started: float = field(default_factory=time.time)


class WebhookSender:
    """Claims, sends and records deliveries until none is due; woken by :meth:`wake` (after
    a commit that wrote deliveries) and every ``webhooks.sweep_interval_s`` or when the next
    retry falls due. Runs in a thread (:meth:`start`) of a Ray actor or of the API process."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        worker: str,
        *,
        transport: Transport | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.worker = worker
        self.transport = transport or Transport.from_settings(settings)
        self.stats = Stats()
        self._rng = random.Random()
        self._wake = threading.Event()
        # a commit woke the sender since its last claim (batches finishing wake it too)
        self._woken = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            settings.webhooks.concurrency, thread_name_prefix=f"{worker}-send"
        )
        self._last_prune = 0.0
        # when the last claim or record committed (they are paced: ``claim_interval_s``)
        self._last_transaction = -math.inf
        # reads that need no transaction (one round trip)
        self._reads = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._listener: Listener | None = None

    # --- control ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        with self.db.engine.begin() as conn:
            released = release(conn, self.worker)
        if released:
            logger.warning(
                "%s: %d deliveries left by a dead sender sent again", self.worker, released
            )
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.worker, daemon=True)
        self._thread.start()
        if self.db.dialect == "postgresql":
            self._listener = Listener(
                self.db.engine, self.wake, self.worker, self.settings.webhooks.claim_interval_s
            )
            self._listener.start()

    def wake(self) -> None:
        self._woken = True
        self._wake.set()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._pool.shutdown(wait=True)
        self.transport.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- work ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.settings.webhooks.sweep_interval_s
            try:
                self.run_once()
                self._maybe_prune()
                with self._reads.connect() as conn:
                    due = next_due(conn)
                if due is not None:
                    wait = min(wait, max(0.0, (due - utcnow()).total_seconds()))
            except Exception as exc:  # the database is away: try again later
                self.stats.last_error = str(exc)[:300]
                logger.exception("%s: round failed", self.worker)
            if wait > 0 and not self._stop.is_set():  # (run_once may have cleared stop's wake)
                self._wake.wait(wait)
            self._wake.clear()

    def run_once(self) -> int:
        """Claims and sends until nothing is due or in flight; the number of attempts made.

        Pipelined: a webhook's next rows are claimed as soon as its previous batch is
        recorded, whatever the other webhooks' receivers take (a slow one holds back its
        own deliveries only). This thread records the batches that have finished and claims
        the next ones in one transaction, at most one such transaction every
        ``webhooks.claim_interval_s`` (across rounds too), so the commits of a burst and the
        batches that finish together are claimed and recorded together: at a trickle of
        commits the sender makes at most ``1 / claim_interval_s`` transactions a second,
        not one or two per commit. When stopping, the batches in flight are still recorded at once
        (their unsent rows given back)."""
        total = 0
        inflight: set[concurrent.futures.Future[Sent]] = set()
        look = True  # claim on the first pass
        busy: set[int] = set()  # webhooks the last claim found with a batch in flight
        settings = self.settings.webhooks
        while True:
            self._wake.clear()
            done = {future for future in inflight if future.done()}
            # claim when a commit woke us since the last claim, or a full batch finished
            # (its webhook may have more rows), or a batch of a webhook whose rows a claim
            # left behind it; not when a batch merely finished
            look = (
                look
                or self._woken
                or any(
                    len(results) + len(unsent) >= settings.batch_size
                    or _webhook_of(results, unsent) in busy
                    for results, unsent in (future.result() for future in done)
                )
            )
            stopping = self._stop.is_set()
            claiming = look and not stopping and len(inflight) - len(done) < settings.concurrency
            if (done or claiming) and not stopping:
                # a transaction at most every claim_interval_s: the batches that finish and
                # the commits that wake us meanwhile are recorded and claimed with it
                pause = settings.claim_interval_s - (time.monotonic() - self._last_transaction)
                if pause > 0:
                    self._stop.wait(pause)
                    continue
            inflight -= done
            finished = [future.result() for future in done]
            batches: list[list[Outgoing]] = []
            if finished or claiming:
                with self.db.engine.begin() as conn:
                    for results, unsent in finished:
                        record(conn, self.worker, results, unsent, self.settings, self._rng)
                        total += len(results)
                    if claiming:
                        look = self._woken = False
                        busy.clear()
                        batches = claim(conn, self.worker, self.settings, busy)
                self._last_transaction = time.monotonic()
            if batches:
                self.stats.rounds += 1
            for batch in batches:
                future = self._pool.submit(self._send_batch, batch)
                future.add_done_callback(lambda _: self._wake.set())
                inflight.add(future)
            if not inflight:
                return total
            if not self._wake.wait(settings.sweep_interval_s):
                look = True  # a sweep: rows written where no one wakes us

    def _send_batch(self, batch: list[Outgoing]) -> Sent:
        """Send a webhook's rows in order: (the attempts made, the rows left for later)."""
        results: list[tuple[Outgoing, Outcome]] = []
        unsent: list[Outgoing] = []
        for index, item in enumerate(batch):
            if self._stop.is_set():
                unsent = batch[index:]
                break
            outcome = self.transport.send(item)
            results.append((item, outcome))
            self.stats.sent += 1
            if outcome.delivered:
                self.stats.delivered += 1
            elif outcome.retry and item.attempt <= item.max_retries:
                self.stats.retried += 1
                unsent = batch[index + 1 :]  # keep the webhook's order: the rest wait
                break
            else:
                self.stats.dead += 1
        return results, unsent

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < _PRUNE_EVERY_S and self._last_prune:
            return
        self._last_prune = time.monotonic()
        self.prune()

    def prune(self) -> int:
        before = utcnow() - timedelta(days=self.settings.webhooks.retention_days)
        with self.db.engine.begin() as conn:
            count = prune(conn, before)
        self.stats.pruned += count
        return count
