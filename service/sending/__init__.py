"""Sending: an edition's way from draft to sent.

Owns the edition lifecycle (lifecycle.py: the one table of status moves, and the only
code that assigns a status), the send controls (controls.py: begin, pause, resume,
cancel, settle), the
outbox of delivery rows with their claims and leases (outbox.py), the send loop that
works through them (loop.py), scheduled sends (schedule.py) and test sends
(testsend.py). May import the shared rules at the top of `service`, `service.models`,
`service.mail`, `service.editions` and `service.audience`; never flask, werkzeug,
celery, kombu nor `worker` (the import contract in pyproject.toml).
"""
