"""Tracking: what comes back after a send.

Owns opens, clicks and one-click unsubscribes recorded as events (events.py), the
buffer that writes the public links' events in batches (buffer.py), the
rules that tell a person from a machine (classify.py), the figures of an edition
(results.py) and the bounce and complaint reports read from the return path
(inbound.py). May import the shared rules at the top of `service`, `service.models`,
`service.mail`, `service.audience` and `service.editions`; never flask, werkzeug,
celery, kombu nor `worker`.
"""
