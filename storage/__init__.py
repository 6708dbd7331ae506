"""Everything persisted: models, migrations, domain services. Imports neither FastAPI nor Ray."""
