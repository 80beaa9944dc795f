"""Access for other programs: API tokens (tokens.py) and outgoing webhooks (webhooks.py).

Owns who may call the JSON API and with which scopes, and the signed calls Hebdo makes
to the URLs admins configured. May import the shared rules at the top of `service`,
`service.models`, `service.team` and the other domain areas; never flask, werkzeug,
celery, kombu nor `worker`.
"""
