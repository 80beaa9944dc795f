"""Delivery limits shared by workers: in Redis, and in the database on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service import ratelimit
from service.config import Settings
from service.ratelimit import (
    DatabaseConnectionCap,
    DatabaseRateLimiter,
    RedisConnectionCap,
    RedisRateLimiter,
)

# SQLite deployments keep the limits in the database; on PostgreSQL both stores run:
# production uses Redis, but the database limiter must hold there too (no REDIS_URL).
STORES = pytest.mark.parametrize(
    ("backend", "store"),
    [("sqlite", "database"), ("postgres", "database"), ("postgres", "redis")],
    indirect=["backend"],
)


def _limiter(
    store: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    per_second: float,
    per_hour: int,
) -> RedisRateLimiter | DatabaseRateLimiter:
    key = f"test-{uuid.uuid4().hex[:8]}"
    if store == "redis":
        assert settings.redis_url
        return RedisRateLimiter(settings.redis_url, key, per_second, per_hour)
    return DatabaseRateLimiter(sessions, key, per_second, per_hour)


def _cap(
    store: str, settings: Settings, sessions: sessionmaker[Session], key: str, limit: int
) -> RedisConnectionCap | DatabaseConnectionCap:
    if store == "redis":
        assert settings.redis_url
        return RedisConnectionCap(settings.redis_url, key, limit, lease_seconds=1)
    return DatabaseConnectionCap(sessions, key, limit, lease_seconds=1)


@STORES
def test_no_second_sees_more_than_the_rate_however_long_messages_are_in_flight(
    backend: str, store: str, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    limiter = _limiter(store, settings, sessions, per_second=20, per_hour=0)
    granted: list[float] = []
    arrived: list[float] = []
    lock = threading.Lock()
    rng = random.Random(7)
    delays = [(rng.uniform(0, 0.08), rng.uniform(0, 0.02)) for _ in range(48)]

    def sender(mine: list[tuple[float, float]]) -> None:
        for to_relay, to_answer in mine:
            ticket = limiter.acquire(patience=5)
            assert ticket is not None
            granted_at = time.monotonic()
            # The relay sees the message some time after the grant, and the sender
            # hears back later still: both delays vary, as they do on a busy machine.
            time.sleep(to_relay)
            with lock:
                granted.append(granted_at)
                arrived.append(time.monotonic())
            time.sleep(to_answer)
            limiter.done(ticket)

    threads = [threading.Thread(target=sender, args=(delays[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    arrived.sort()
    granted.sort()
    assert len(arrived) == 48
    assert max(sum(1 for t in arrived if s <= t < s + 1) for s in arrived) <= 20
    # Grants are spread evenly, 1/20 s apart give or take a thread's wake-up, not
    # bunched at the start of each second.
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert statistics.median(gaps) > 0.9 / 20
    assert max(sum(1 for t in granted if s <= t < s + 0.25) for s in granted) <= 10
    assert arrived[-1] - arrived[0] >= (48 - 20) / 20


@STORES
def test_hourly_limit_refuses_once_the_rolling_hour_is_full(
    backend: str, store: str, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    limiter = _limiter(store, settings, sessions, per_second=0, per_hour=5)
    assert all(limiter.acquire(patience=0) for _ in range(5))
    started = time.monotonic()
    assert limiter.acquire(patience=1) is None
    assert time.monotonic() - started < 0.5  # the wait is an hour away: no pointless sleep


@STORES
def test_connection_cap_admits_limit_holders_until_one_leaves_or_its_lease_runs_out(
    backend: str, store: str, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    key = f"test-{uuid.uuid4().hex[:8]}"
    first, second, third = (_cap(store, settings, sessions, key, 2) for _ in range(3))
    assert first.acquire(patience=0)
    assert second.acquire(patience=0)
    assert not third.acquire(patience=0.2)

    second.release()
    assert third.acquire(patience=0)

    # A holder that stops renewing (a killed worker) loses its slot when the lease ends.
    time.sleep(0.5)
    assert third.renew()
    assert not second.acquire(patience=0)
    assert second.acquire(patience=3)
    assert not first.renew()
    third.release()
    second.release()


def test_no_limits_configured_means_no_limiter(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    assert ratelimit.limiter_for(settings, sessions) is None
    limited = Settings.from_env({**_env_of(settings), "HEBDO_RATE_PER_SECOND": "14"})
    limiter = ratelimit.limiter_for(limited, sessions)
    expected = RedisRateLimiter if settings.redis_url else DatabaseRateLimiter
    assert isinstance(limiter, expected)
    assert ratelimit.connection_cap_for(limited, sessions) is not None
    uncapped = Settings.from_env({**_env_of(settings), "HEBDO_MAX_CONNECTIONS": "0"})
    assert ratelimit.connection_cap_for(uncapped, sessions) is None


def _env_of(settings: Settings) -> dict[str, str]:
    env = {
        "DATABASE_URL": settings.database_url,
        "CELERY_BROKER_URL": settings.broker_url,
        "SECRET_KEY": settings.secret_key,
        "HEBDO_INSTANCE": str(settings.instance_path),
    }
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env
