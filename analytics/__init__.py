"""Analytics events: model, sinks (ClickHouse server, embedded chdb), queries, dashboards.
Arrives with the analytics issue."""
