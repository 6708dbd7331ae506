"""Analytics events on the database side: CVAT event rows built from domain changes and client
batches, working time, and the outbox they wait in until the events sink ships them to
ClickHouse (:mod:`cvat_ray.analytics` holds the ClickHouse side)."""
