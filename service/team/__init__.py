"""The team: the editors who run the newsletters.

Owns editor accounts, logins, their rate limit and sessions (editors.py), managing
accounts: roles, newsletters given, disabled (accounts.py), getting into an account:
invitations, password resets and the first admin (access.py), the TOTP second factor
(totp.py), the table of roles and what each may do (permissions.py) and the audit log
(audit.py). May import
the shared rules at the top of `service` and `service.models`; never flask, werkzeug,
celery, kombu nor `worker`.
"""
