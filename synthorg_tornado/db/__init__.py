"""Persistence: the models, the engine, migrations and repositories."""
