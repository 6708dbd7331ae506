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
import hashlib
import hmac
import logging
import math
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx
from sqlalchemy import ColumnElement, bindparam, delete, func, or_, select, union_all, update
from sqlalchemy.orm import Session

from cvat_ray.cluster.outbound import OutboundGuard, OutboundRefused, Unresolvable
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Webhook, WebhookDelivery, utcnow
from cvat_ray.storage.webhooks.outbox import DELIVERIES

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


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now)


def claim(
    session: Session, worker: str, settings: Settings, busy: set[int] | None = None
) -> list[list[Outgoing]]:
    """Lease the due deliveries of each webhook to ``worker`` (see the module docstring).
    ``busy`` gets the webhooks with due rows left behind a leased one (a batch in flight):
    their sender claims again when that batch is recorded."""
    now = utcnow()
    d = WebhookDelivery
    candidates = list(
        session.scalars(
            select(d.webhook_id)
            .where(d.status == "pending", d.next_attempt_at <= now, _free(now))
            .group_by(d.webhook_id)
            .order_by(func.min(d.id))
            .limit(256)
        )
    )
    if not candidates:
        return []
    lock = select(Webhook).where(Webhook.id.in_(candidates)).order_by(Webhook.id)
    if session.get_bind().dialect.name == "postgresql":
        # FOR NO KEY UPDATE: senders exclude each other, while the API's transactions that
        # insert deliveries (their foreign key takes FOR KEY SHARE) neither wait nor are
        # skipped
        lock = lock.with_for_update(skip_locked=True, key_share=True)
    webhooks = {w.id: w for w in session.scalars(lock)}
    if not webhooks:
        return []
    # each webhook's oldest pending rows, in one statement (an index range per webhook)
    columns = (d.id, d.uid, d.webhook_id, d.event, d.body, d.attempt, d.next_attempt_at)

    def oldest(webhook_id: int) -> Any:
        return select(
            select(*columns, d.claimed_until)
            .where(d.webhook_id == webhook_id, d.status == "pending")
            .order_by(d.id)
            .limit(settings.webhooks.batch_size)
            .subquery()
        )

    parts = [oldest(webhook_id) for webhook_id in webhooks]
    if len(parts) == 1:
        rows = list(session.execute(parts[0]).all())
    else:
        rows = list(session.execute(union_all(*parts)).all())
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
        _bury(session, idle, "The webhook is not active.")
    taken = {w: t for w, t in taken.items() if webhooks[w].is_active}
    ids = [r.id for t in taken.values() for r in t]
    if not ids:
        return []
    result = session.execute(
        update(d)
        .where(d.id.in_(ids), d.status == "pending", _free(now))
        .values(claimed_by=worker, claimed_until=lease)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(ids):  # type: ignore[attr-defined]
        # raced with another claimer (SQLite, several processes): give them back, try later
        session.execute(
            update(d)
            .where(d.id.in_(ids), d.claimed_by == worker)
            .values(claimed_by=None, claimed_until=None)
            .execution_options(synchronize_session=False)
        )
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


def _bury(session: Session, ids: Sequence[int], reason: str) -> None:
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(list(ids)))
        .values(
            status="dead",
            response=reason,
            claimed_by=None,
            claimed_until=None,
            updated_date=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


def record(
    session: Session,
    worker: str,
    results: Iterable[tuple[Outgoing, Outcome]],
    unsent: Iterable[Outgoing],
    settings: Settings,
    rng: random.Random,
) -> None:
    """Write what each attempt got, and give back the leases of rows not tried."""
    now = utcnow()
    table = DELIVERIES
    finished: list[dict[str, object]] = []
    retries: list[dict[str, object]] = []
    for item, outcome in results:
        row: dict[str, object] = {
            "b_id": item.id,
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
    for rows, column in ((finished, "status"), (retries, "next_attempt_at")):
        if not rows:
            continue
        varying = ("attempt", "status_code", "response", "request_duration", column)
        session.execute(
            update(table)
            .where(
                table.c.id == bindparam("b_id"),
                table.c.claimed_by == worker,
                table.c.status == "pending",
            )
            .values(
                {name: bindparam(f"b_{name}") for name in varying}
                | {"updated_date": now, "claimed_by": None, "claimed_until": None}
            ),
            rows,
        )
    left = [item.id for item in unsent]
    if left:
        session.execute(
            update(table)
            .where(table.c.id.in_(left), table.c.claimed_by == worker)
            .values(claimed_by=None, claimed_until=None)
        )


def release(session: Session, worker: str) -> int:
    """Give back what ``worker`` holds (a sender that has just (re)started: its previous
    process died holding them; they are sent again, with the same delivery ids)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.claimed_by == worker, WebhookDelivery.status == "pending")
        .values(claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def next_due(session: Session) -> datetime | None:
    """When the earliest pending delivery falls due."""
    return session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at)).where(WebhookDelivery.status == "pending")
    )


def prune(session: Session, older_than: datetime) -> int:
    """Delete delivered and dead deliveries created before ``older_than``."""
    result = session.execute(
        delete(WebhookDelivery)
        .where(
            WebhookDelivery.status.in_(("delivered", "dead")),
            WebhookDelivery.created_date < older_than,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


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

    # --- control ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        with self.db.session() as session:
            released = release(session, self.worker)
        if released:
            logger.warning(
                "%s: %d deliveries left by a dead sender sent again", self.worker, released
            )
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.worker, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._woken = True
        self._wake.set()

    def stop(self) -> None:
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
                with self.db.session() as session:
                    due = next_due(session)
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
        the next ones in one transaction, at most every ``webhooks.claim_interval_s``, so
        the commits of a burst are claimed, sent and recorded together. When stopping, the
        batches in flight are still recorded (their unsent rows given back)."""
        total = 0
        inflight: set[concurrent.futures.Future[Sent]] = set()
        last_claim = -math.inf
        look = True  # claim on the first pass
        busy: set[int] = set()  # webhooks the last claim found with a batch in flight
        while True:
            self._wake.clear()
            done = {future for future in inflight if future.done()}
            inflight -= done
            finished = [future.result() for future in done]
            # claim when a commit woke us since the last claim, or a full batch finished
            # (its webhook may have more rows), or a batch of a webhook whose rows a claim
            # left behind it; not when a batch merely finished
            look = (
                look
                or self._woken
                or any(
                    len(results) + len(unsent) >= self.settings.webhooks.batch_size
                    or _webhook_of(results, unsent) in busy
                    for results, unsent in finished
                )
            )
            claiming = (
                look
                and not self._stop.is_set()
                and len(inflight) < self.settings.webhooks.concurrency
            )
            if claiming:
                pause = self.settings.webhooks.claim_interval_s - (time.monotonic() - last_claim)
                if pause > 0 and self._stop.wait(pause):
                    claiming = False
            batches: list[list[Outgoing]] = []
            if finished or claiming:
                with self.db.session() as session:
                    for results, unsent in finished:
                        record(session, self.worker, results, unsent, self.settings, self._rng)
                        total += len(results)
                    if claiming:
                        last_claim = time.monotonic()
                        look = self._woken = False
                        busy.clear()
                        batches = claim(session, self.worker, self.settings, busy)
            if batches:
                self.stats.rounds += 1
            for batch in batches:
                future = self._pool.submit(self._send_batch, batch)
                future.add_done_callback(lambda _: self._wake.set())
                inflight.add(future)
            if not inflight:
                return total
            if not self._wake.wait(self.settings.webhooks.sweep_interval_s):
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
        with self.db.session() as session:
            count = prune(session, before)
        self.stats.pruned += count
        return count
