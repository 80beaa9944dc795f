"""The audience: who reads a newsletter, and what they agreed to.

Owns subscribers and their subscriptions (subscribers.py, subscriptions.py), the public
signup and its confirmation (signup.py), a reader's preferences and rights
(preferences.py), CSV imports and exports (imports.py, exports.py) and the outbox of
import confirmation mails (confirmations.py). May import the shared rules at the top
of `service`, `service.models` and `service.mail`; never flask, werkzeug, celery,
kombu nor `worker`.
"""
