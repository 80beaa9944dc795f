"""Rate limits shared by every process: public forms, and the delivery limits of the relay.

A limit is a key (e.g. "signup:ip:203.0.113.7"), a window length and a number
of hits allowed per window. Each hit is one atomic upsert that returns the new
count, so concurrent web processes and workers never both take the last slot.
Works the same on SQLite (3.35+) and PostgreSQL; old windows are purged apart.

The delivery limits (messages per second and per hour, concurrent SMTP
connections) hold across all workers on all machines: they live in Redis in
production and in the same RateWindow table on the embedded default; see
limiter_for() and connection_cap_for() below.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import time
import typing
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Table,
    and_,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.models import RateWindow


def window_start(window_seconds: int, now: float | None = None) -> int:
    """The epoch second at which the window holding `now` began."""
    moment = int(time.time() if now is None else now)
    return moment - moment % window_seconds


def hit(
    session: Session,
    key: str,
    window_seconds: int,
    limit: int,
    *,
    cost: int = 1,
    now: float | None = None,
) -> bool:
    """Count `cost` hits on `key` in the current window; False once over `limit`.

    Refused hits are counted too, so hammering a full window keeps it full; the
    next window starts from zero. The caller commits.
    """
    if limit < 0:
        raise ValueError("window_seconds > 0, limit >= 0 and cost >= 1 are required")
    return count_hit(session, key, window_seconds, cost=cost, now=now) <= limit


def count_hit(
    session: Session,
    key: str,
    window_seconds: int,
    *,
    cost: int = 1,
    now: float | None = None,
) -> int:
    """Count `cost` hits on `key` in the current window; return the window's count so far.

    For limits that tell the caller what is left (the API's RateLimit header).
    """
    if window_seconds <= 0 or cost < 1:
        raise ValueError("window_seconds > 0, limit >= 0 and cost >= 1 are required")
    start = window_start(window_seconds, now)
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = RateWindow.__table__
    assert isinstance(table, Table)
    upsert = (
        insert(table)
        .values(key=key, window_start=start, count=cost)
        .on_conflict_do_update(
            index_elements=[table.c.key, table.c.window_start],
            set_={"count": table.c.count + cost},
        )
        .returning(table.c.count)
    )
    return int(session.execute(upsert).scalar_one())


def purge(session: Session, older_than_seconds: int, *, now: float | None = None) -> int:
    """Delete windows that started more than `older_than_seconds` ago; return how many."""
    cutoff = int(time.time() if now is None else now) - older_than_seconds
    result = session.execute(
        delete(RateWindow)
        .where(RateWindow.window_start < cutoff)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)  # DML results carry a row count
    return int(result.rowcount or 0)


# The longest window any limit counts over (signups and data links per hour; logins use 15
# minutes). Windows twice that old can no longer count towards any limit.
LONGEST_WINDOW_SECONDS = 3600


def purge_expired(session: Session, *, now: float | None = None) -> int:
    """Delete the windows no limit can count any more; beat runs this every hour.

    Only windows keyed in epoch seconds are old enough to match: the delivery limiter's
    microsecond rows (slot and in-flight marks) are far above any cutoff in seconds, and it
    tidies them itself.
    """
    return purge(session, 2 * LONGEST_WINDOW_SECONDS, now=now)


def recent(
    session: Session, key: str, span_seconds: int, *, now: float | None = None
) -> list[tuple[int, int]]:
    """(window start, count) of `key`'s windows begun in the last `span_seconds`, oldest first.

    With short windows this makes a sliding limit: the sum over the span.
    """
    since = int(time.time() if now is None else now) - span_seconds
    rows = session.execute(
        select(RateWindow.window_start, RateWindow.count)
        .where(RateWindow.key == key, RateWindow.window_start > since)
        .order_by(RateWindow.window_start)
    ).all()
    return [(int(start), int(count)) for start, count in rows]


def forget(session: Session, key: str) -> int:
    """Delete every window of `key` (a lock lifted by hand); return how many."""
    result = session.execute(
        delete(RateWindow).where(RateWindow.key == key).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def serialise(session: Session, name: str) -> None:
    """Until the transaction ends, no other transaction that serialises on `name` runs
    (PostgreSQL: an advisory lock; SQLite: every write transaction already is one)."""
    _serialise(session, name)


# Delivery limits, shared by every worker process on every machine.
#
# Per second: the relay counts arrivals, and "at most N in any second" must hold
# there, whatever the delays between our clock and its. Each message reserves a
# slot, at least 1/N after the previous one, so sends are evenly spaced; the slot
# is also at least one second after the completion of the N-th previous message,
# where a message counts as in flight (arriving at any moment) from its
# reservation until the sender reports it done. A message arrives after its slot
# and before it is reported, so no second at the relay can ever see N + 1 of
# them. The price is the delay between slot and report (a few milliseconds) out of
# each second, instead of a fixed safety margin that a slow moment could exceed.
#
# Per hour: sixty-one one-minute buckets. A message may go when the buckets that
# can hold sends of the last hour (this minute and the sixty before) count fewer
# than the limit, so no rolling hour at the relay ever sees more.
#
# Connections: each process that opens an SMTP connection holds a lease that it
# renews while it sends; a killed process's lease simply runs out.
#
# In the database, rows whose `window_start` holds microseconds (the one 64-bit
# column of RateWindow) are the slot row (the last reserved slot) and one row per
# message (count 0: in flight until that time; count 1: done at that time); the
# minute buckets are ordinary windows, and a connection lease is a row whose
# `window_start` is the epoch second at which it expires.

CONNECTION_LEASE_SECONDS = 20
IN_FLIGHT_SECONDS = 120  # a reservation never reported done (its worker died) counts this long
_SECOND_US = 1_000_000
_MINUTE_US = 60 * _SECOND_US
_BUCKETS = 61  # this minute and the sixty before: every send of the last rolling hour
_FULL_RETRY_US = 10_000  # every allowed message is in flight: ask again this much later


def limits_key(settings: Settings) -> str:
    """The name under which the limits of the configured relays are counted."""
    relays = ",".join(relay.label for relay in settings.smtp_relays)
    if len(relays) > 80:
        relays = hashlib.sha256(relays.encode()).hexdigest()[:32]
    return f"smtp:{relays}"


def limiter_for(
    settings: Settings, factory: sessionmaker[Session]
) -> RedisRateLimiter | DatabaseRateLimiter | None:
    """The shared rate limiter of this deployment: Redis when configured, else the database."""
    if settings.rate_per_second <= 0 and settings.rate_per_hour <= 0:
        return None
    key = limits_key(settings)
    if settings.redis_url:
        return RedisRateLimiter(
            settings.redis_url, key, settings.rate_per_second, settings.rate_per_hour
        )
    return DatabaseRateLimiter(factory, key, settings.rate_per_second, settings.rate_per_hour)


def connection_cap_for(
    settings: Settings, factory: sessionmaker[Session]
) -> RedisConnectionCap | DatabaseConnectionCap | None:
    """The shared cap on SMTP connections, or None when it is switched off (0)."""
    if settings.max_connections <= 0:
        return None
    key = limits_key(settings)
    if settings.redis_url:
        return RedisConnectionCap(settings.redis_url, key, settings.max_connections)
    return DatabaseConnectionCap(factory, key, settings.max_connections)


@dataclass(frozen=True)
class _PerSecond:
    """A per-second rate as "at most `count` messages in any `window_us`"."""

    count: int
    window_us: int

    @classmethod
    def of(cls, per_second: float) -> _PerSecond:
        if per_second <= 0:
            return cls(0, 0)
        count = max(1, math.floor(per_second))  # 14.5/s means 14 in a second, 0.5/s 1 in 2 s
        return cls(count, round(_SECOND_US * max(1.0, count / per_second)))

    @property
    def interval_us(self) -> int:
        return self.window_us // self.count if self.count else 0


def _sleep_until(deadline: float) -> None:
    # time.sleep() may wake a little early on some platforms; never send before the slot.
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)


class _Granting:
    """The waiting loop shared by both rate limiters."""

    def _reserve(self, ticket: str) -> tuple[bool, float]:
        raise NotImplementedError

    def acquire(self, patience: float) -> str | None:
        """Wait for the right to send one message; its ticket, or None if that takes too long.

        Pass the ticket to done() once the relay has answered (or the send failed).
        None comes back as soon as the limits allow nothing within `patience` seconds.
        """
        ticket = uuid.uuid4().hex[:16]
        give_up = time.monotonic() + patience
        while True:
            granted, wait = self._reserve(ticket)
            until = time.monotonic() + wait
            if granted:
                _sleep_until(until)
                return ticket
            if until > give_up:
                return None
            _sleep_until(until)


_RESERVE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local count, window, per_hour = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if per_hour > 0 then
  local minute = math.floor(now / 60000000)
  local fields = {}
  for i = 60, 0, -1 do fields[#fields + 1] = minute - i end
  local counts = redis.call('HMGET', KEYS[4], unpack(fields))
  local total = 0
  for i = 1, #counts do total = total + (tonumber(counts[i]) or 0) end
  if total >= per_hour then
    local excess = total - per_hour + 1
    for i = 1, #counts do
      excess = excess - (tonumber(counts[i]) or 0)
      if excess <= 0 then return {0, (fields[i] + 61) * 60000000 - now} end
    end
  end
end
local slot = now
if count > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  local flying = redis.call('ZCARD', KEYS[2])
  if flying >= count then return {0, tonumber(ARGV[6])} end
  local last = tonumber(redis.call('GET', KEYS[1]) or '0')
  if last + math.floor(window / count) > slot then slot = last + math.floor(window / count) end
  local done = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. string.format('%d', slot - window),
                          '+inf', 'WITHSCORES')
  local excess = flying + #done / 2 - (count - 1)
  if excess > 0 then
    local freed = tonumber(done[excess * 2]) + window
    if freed > slot then slot = freed end
  end
  redis.call('SET', KEYS[1], string.format('%d', slot), 'PX', 3600000)
  redis.call('ZADD', KEYS[2], string.format('%d', now + tonumber(ARGV[5])), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 3600000)
end
if per_hour > 0 then
  local minute = math.floor(slot / 60000000)
  redis.call('HINCRBY', KEYS[4], minute, 1)
  redis.call('HDEL', KEYS[4], minute - 61)
  redis.call('PEXPIRE', KEYS[4], 3720000)
end
return {1, slot - now}
"""

_DONE_SCRIPT = """
local t = redis.call('TIME')
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 3600000)
end
return 1
"""


class RedisRateLimiter(_Granting):
    """Per-second and per-hour limits kept in Redis, one Lua script call per step."""

    def __init__(self, redis_url: str, key: str, per_second: float, per_hour: int) -> None:
        client = redis.Redis.from_url(redis_url)
        # One hash tag for every key, so that a Redis Cluster keeps them on one node.
        self._keys = [
            f"hebdo:rate:{{{key}}}:{part}" for part in ("slot", "flying", "done", "minutes")
        ]
        rate = _PerSecond.of(per_second)
        self._args: list[int] = [
            rate.count,
            rate.window_us,
            int(per_hour),
            IN_FLIGHT_SECONDS * _SECOND_US,
            _FULL_RETRY_US,
        ]
        self._reserve_script = client.register_script(_RESERVE_SCRIPT)
        self._done_script = client.register_script(_DONE_SCRIPT)

    def _reserve(self, ticket: str) -> tuple[bool, float]:
        granted, wait_us = self._reserve_script(keys=self._keys, args=[ticket, *self._args])
        return bool(granted), max(0, int(wait_us)) / 1e6

    def done(self, ticket: str) -> None:
        """Report the message of this ticket accepted or refused: it is no longer in flight."""
        self._done_script(keys=self._keys[1:3], args=[ticket])


class DatabaseRateLimiter(_Granting):
    """The same limits kept in the RateWindow table (the embedded default)."""

    def __init__(
        self, factory: sessionmaker[Session], key: str, per_second: float, per_hour: int
    ) -> None:
        self._factory = factory
        self._key = key
        self._slot_key = f"{key}:slot"
        self._ticket_prefix = f"{key}:ticket:"
        self._minute_key = f"{key}:minute"
        self._rate = _PerSecond.of(per_second)
        self._per_hour = int(per_hour)
        self._swept_minute = 0

    def _reserve(self, ticket: str) -> tuple[bool, float]:
        with self._factory() as session, session.begin():
            _serialise(session, self._key)
            now_us = _now_us(session)
            if self._per_hour:
                wait = self._hour_wait(session, now_us)
                if wait > 0:
                    return False, wait
            slot_us = now_us
            if self._rate.count:
                slot = self._next_slot(session, ticket, now_us)
                if slot is None:
                    return False, _FULL_RETRY_US / 1e6
                slot_us = slot
            if self._per_hour:
                self._count(session, slot_us)
        return True, (slot_us - now_us) / 1e6

    def done(self, ticket: str) -> None:
        """Report the message of this ticket accepted or refused: it is no longer in flight."""
        with self._factory() as session, session.begin():
            session.execute(
                update(_table)
                .where(_table.c.key == self._ticket_prefix + ticket, _table.c.count == 0)
                .values(window_start=_now_sql(session), count=1)
            )

    def _hour_wait(self, session: Session, now_us: int) -> float:
        minute = now_us // _MINUTE_US
        buckets = session.execute(
            select(_table.c.window_start, _table.c.count)
            .where(
                _table.c.key == self._minute_key,
                _table.c.window_start >= (minute - _BUCKETS + 1) * 60,
            )
            .order_by(_table.c.window_start)
        ).all()
        excess = sum(count for _, count in buckets) - self._per_hour + 1
        for start, count in buckets:
            if excess <= 0:
                break
            excess -= count
            if excess <= 0:
                return float(start + _BUCKETS * 60 - now_us / 1e6)
        return 0.0

    def _next_slot(self, session: Session, ticket: str, now_us: int) -> int | None:
        count, window = self._rate.count, self._rate.window_us
        tickets = _table.c.key.startswith(self._ticket_prefix, autoescape=True)
        flying, finished = _table.c.count == 0, _table.c.count == 1
        session.execute(
            delete(_table).where(
                tickets,
                or_(
                    and_(flying, _table.c.window_start <= now_us),
                    and_(finished, _table.c.window_start <= now_us - window),
                ),
            )
        )
        in_flight = session.scalar(select(func.count()).where(tickets, flying)) or 0
        if in_flight >= count:
            return None
        last = session.scalar(select(_table.c.window_start).where(_table.c.key == self._slot_key))
        slot = now_us if last is None else max(now_us, last + self._rate.interval_us)
        done = session.scalars(
            select(_table.c.window_start)
            .where(tickets, finished, _table.c.window_start > slot - window)
            .order_by(_table.c.window_start)
        ).all()
        excess = in_flight + len(done) - (count - 1)
        if excess > 0:
            slot = max(slot, done[excess - 1] + window)
        if last is None:
            session.execute(insert(_table).values(key=self._slot_key, window_start=slot, count=0))
        else:
            session.execute(
                update(_table).where(_table.c.key == self._slot_key).values(window_start=slot)
            )
        expires = now_us + IN_FLIGHT_SECONDS * _SECOND_US
        session.execute(
            insert(_table).values(key=self._ticket_prefix + ticket, window_start=expires, count=0)
        )
        return slot

    def _count(self, session: Session, slot_us: int) -> None:
        minute = slot_us // _MINUTE_US
        hit(session, self._minute_key, 60, self._per_hour, now=minute * 60)
        if minute != self._swept_minute:
            self._swept_minute = minute
            session.execute(
                delete(_table).where(
                    _table.c.key == self._minute_key,
                    _table.c.window_start < (minute - _BUCKETS) * 60,
                )
            )


_CONNECTION_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if ARGV[4] == 'renew' or redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
"""


class _Leasing:
    """Lease bookkeeping shared by both connection caps."""

    _lease_seconds: float

    def __init__(self) -> None:
        self._renewed_at: float | None = None
        self._pid = 0
        self._name = ""

    @property
    def holder(self) -> str:
        """Who holds the lease: this process (a forked child gets a name of its own)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._name = f"{socket.gethostname()}:{self._pid}:{uuid.uuid4().hex[:12]}"
        return self._name

    def _take(self, renewing: bool) -> bool:
        raise NotImplementedError

    def _drop(self) -> None:
        raise NotImplementedError

    def acquire(self, patience: float) -> bool:
        """Take a connection slot, waiting up to `patience` s; False if none frees up."""
        give_up = time.monotonic() + patience
        while not self._take(renewing=False):
            if time.monotonic() >= give_up:
                return False
            time.sleep(min(0.5, max(0.0, give_up - time.monotonic())))
        self._renewed_at = time.monotonic()
        return True

    def renew(self) -> bool:
        """Extend this process's lease when a third of it has passed; False if it was lost."""
        if self._renewed_at is None:
            return False
        if time.monotonic() - self._renewed_at < self._lease_seconds / 3:
            return True
        if not self._take(renewing=True):
            self._renewed_at = None
            return False
        self._renewed_at = time.monotonic()
        return True

    def release(self) -> None:
        """Give the slot back."""
        if self._renewed_at is not None:
            self._renewed_at = None
            self._drop()


class RedisConnectionCap(_Leasing):
    """Connection leases in a Redis sorted set (holder → lease end)."""

    def __init__(
        self,
        redis_url: str,
        key: str,
        limit: int,
        *,
        lease_seconds: float = CONNECTION_LEASE_SECONDS,
    ) -> None:
        super().__init__()
        self._client = redis.Redis.from_url(redis_url)
        self._key = f"hebdo:connections:{{{key}}}"
        self._limit = limit
        self._lease_seconds = lease_seconds
        self._script = self._client.register_script(_CONNECTION_SCRIPT)

    def _take(self, renewing: bool) -> bool:
        lease_ms = round(self._lease_seconds * 1000)
        mode = "renew" if renewing else "acquire"
        args: list[str | int] = [self.holder, self._limit, lease_ms, mode]
        return bool(self._script(keys=[self._key], args=args))

    def _drop(self) -> None:
        self._client.zrem(self._key, self.holder)


class DatabaseConnectionCap(_Leasing):
    """Connection leases as RateWindow rows: key names the holder, window_start its end."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        key: str,
        limit: int,
        *,
        lease_seconds: float = CONNECTION_LEASE_SECONDS,
    ) -> None:
        super().__init__()
        self._factory = factory
        self._prefix = f"{key}:connection:"
        self._limit = limit
        self._lease_seconds = lease_seconds

    def _take(self, renewing: bool) -> bool:
        mine = self._prefix + self.holder
        ours = _table.c.key.startswith(self._prefix, autoescape=True)
        with self._factory() as session, session.begin():
            now_us = _now_us(session)
            now, until = now_us // 1_000_000, math.ceil(now_us / 1e6 + self._lease_seconds)
            if renewing:
                renewed = session.execute(
                    update(_table)
                    .where(_table.c.key == mine, _table.c.window_start > now)
                    .values(window_start=until)
                )
                return bool(_rowcount(renewed))
            _serialise(session, self._prefix)
            session.execute(delete(_table).where(ours, _table.c.window_start <= now))
            others = session.scalar(
                select(func.count()).select_from(_table).where(ours, _table.c.key != mine)
            )
            if (others or 0) >= self._limit:
                return False
            session.execute(delete(_table).where(_table.c.key == mine))
            session.execute(insert(_table).values(key=mine, window_start=until, count=1))
            return True

    def _drop(self) -> None:
        mine = self._prefix + self.holder
        with self._factory() as session, session.begin():
            session.execute(delete(_table).where(_table.c.key == mine))


_table = typing.cast(Table, RateWindow.__table__)


def _now_sql(session: Session) -> ColumnElement[int]:
    """Microseconds since the epoch, by the clock every machine shares: the database's."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()) * 1_000_000, BigInteger)
    # SQLite lives on one machine, so its clock is ours; reading it after BEGIN IMMEDIATE
    # has taken the write lock keeps a wait for the lock out of the reading.
    session.connection()
    return literal(time.time_ns() // 1000, BigInteger)


def _now_us(session: Session) -> int:
    return int(session.scalar(select(_now_sql(session))) or 0)


def _serialise(session: Session, name: str) -> None:
    # SQLite transactions here start with BEGIN IMMEDIATE, one writer at a time;
    # PostgreSQL needs a lock for a check-then-write that must not interleave.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)
