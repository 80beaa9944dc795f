"""Per-process resources of a worker: settings, engine and session factory."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from service import ratelimit
from service.config import Settings
from service.db import make_engine, session_factory


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Settings of this worker process, read from the environment once."""
    return Settings.from_env()


@lru_cache(maxsize=1)
def sessions() -> sessionmaker[Session]:
    """The session factory of this process (created after fork, never shared)."""
    return session_factory(make_engine(settings().database_url))


@lru_cache(maxsize=1)
def limiter() -> ratelimit.RedisRateLimiter | ratelimit.DatabaseRateLimiter | None:
    """The delivery rate limits shared with every other worker, if any are configured."""
    return ratelimit.limiter_for(settings(), sessions())


@lru_cache(maxsize=1)
def connection_cap() -> ratelimit.RedisConnectionCap | ratelimit.DatabaseConnectionCap | None:
    """The cap on SMTP connections open at once across all workers."""
    return ratelimit.connection_cap_for(settings(), sessions())
