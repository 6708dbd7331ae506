"""Ray actors and Ray Data pipelines (imports, exports, backups, webhook delivery,
auto-annotation runs) and the one launcher that starts them. Filled by the issues that need
background work; the core platform has none yet."""
