"""Real services for the tests: a throwaway PostgreSQL cluster, redis-server, SMTP servers,
a DNS server on loopback (dns_server.py).

Nothing here is a mock: each class starts the real program (or aiosmtpd in a thread) and
fails loudly, with the program's own output, when it cannot.
"""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    # The kernel picks an unused port; a racing process could still take it before the
    # caller binds, so the servers below retry with a fresh port when that happens.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
