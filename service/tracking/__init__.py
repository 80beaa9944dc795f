"""Tracking: what comes back after a send.

Owns opens, clicks and one-click unsubscribes recorded as events (events.py) and the
bounce and complaint reports read from the return path (inbound.py). May import the
shared rules at the top of `service`, `service.models`, `service.mail` and
`service.audience`; never flask, werkzeug, celery, kombu nor `worker`.
"""
