"""Webhooks: the event catalogue, the outbox consumer of domain changes, and the sender.

- :mod:`.events`: CVAT 2.80's event keys and which webhook type may subscribe to which.
- :mod:`.outbox`: the consumer registered on :mod:`cvat_ray.storage.changes`; for every change
  it writes one delivery row per matching webhook, in the change's transaction, and wakes the
  sender after commit.
- :mod:`.sender`: claims due deliveries, sends them through the outbound guard, records every
  attempt, retries with backoff and jitter; Ray-free (a Ray actor or a thread runs it).
"""
