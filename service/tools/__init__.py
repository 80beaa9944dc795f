"""Tooling around the service, outside the domain rules.

The local SMTP sink (sink.py), the demo's sample data (demo.py), the Alembic upgrade
and schema check (migrate.py) and the deployment preflight (preflight.py, `hebdo
check`). Used by the CLI, the tests and the benchmarks; may import anything in
`service` except the doors (web, cli).
"""
