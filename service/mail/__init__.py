"""Mail: everything that turns content into messages on the wire.

Owns rendering with the one Jinja environment of the email templates (render.py),
the MIME of editions (mime.py) and of notices (notices.py), DKIM (dkim.py), every
public URL from one table of routes (links.py, shared with the web blueprints),
SMTP and the `Transport` protocol (transport.py), and dates in words (wording.py).
May import the shared rules at the top of `service` and `service.models`; never
flask, werkzeug, celery, kombu nor `worker`.
"""
