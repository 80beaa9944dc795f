"""Celery tasks: thin wrappers that pass ids to the domain."""
