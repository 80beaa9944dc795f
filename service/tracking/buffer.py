"""The buffer between the public endpoints and the event table.

A pixel, click or feedback request only verifies its token, hands a `Pending` event
to `EventBuffer.add` and answers; a background thread of the process writes what
was handed over as one batch (`events.judge` reads and judges it outside the
write lock, `events.store` writes it with one bulk INSERT) every
`interval` seconds, or at once when `max_events` are waiting, and `close()`
(registered with atexit, so also on gunicorn's graceful stop) writes the rest.
Measured against one write per request in bench/RESULTS.md.

What a crash can lose: the events handed over since the last write, at most
`interval` seconds of them (by default one second) in the crashed process. A write
that fails (database restarting, locked) keeps its events and is tried again at
the next tick; past `limit` waiting events the oldest are dropped and counted,
so a database down for long cannot eat the web process's memory.

With `interval` 0 the buffer is synchronous: every `add` is written at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque

from sqlalchemy.orm import Session, sessionmaker

from service.db import read_only
from service.tracking import events

log = logging.getLogger(__name__)


class EventBuffer:
    """Pending public-link events of this process, written in batches."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        interval: float = 1.0,
        max_events: int = 1000,
        limit: int = 100_000,
    ) -> None:
        self.sessions = sessions
        self.interval = interval
        self.max_events = max_events
        self.limit = limit
        self.dropped = 0  # events given up because the database stayed away too long
        self.batches = 0  # writes that stored something, for tests and the benchmark
        self._waiting: deque[events.Pending] = deque()
        self._lock = threading.Lock()  # guards _waiting
        self._writing = threading.Lock()  # one write at a time
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, event: events.Pending) -> None:
        """Take one event; it is written within `interval` seconds."""
        if self.interval <= 0:
            with self._writing, self.sessions.begin() as session:
                events.write(session, [event])
            return
        with self._lock:
            self._waiting.append(event)
            while len(self._waiting) > self.limit:
                self._waiting.popleft()
                self.dropped += 1
            full = len(self._waiting) >= self.max_events
            if self._pid != os.getpid():  # first event of this process (gunicorn forks)
                self._start()
        if full:
            self._wake.set()

    def pending(self) -> int:
        """How many events wait to be written."""
        with self._lock:
            return len(self._waiting)

    def flush(self) -> int:
        """Write everything waiting now, in batches of max_events; how many rows were stored.

        A failed write puts its batch back in front and raises.
        """
        stored = 0
        with self._writing:
            while True:
                with self._lock:
                    count = min(len(self._waiting), self.max_events)
                    batch = [self._waiting.popleft() for _ in range(count)]
                if not batch:
                    return stored
                try:
                    # Reads and verdicts first, without the write lock (SQLite's one
                    # writer is shared with the sending workers); then a short write.
                    with self.sessions() as reader:
                        judged = events.judge(read_only(reader), batch)
                    with self.sessions.begin() as session:
                        stored += events.store(session, judged)
                except Exception:
                    with self._lock:
                        self._waiting.extendleft(reversed(batch))
                    raise
                self.batches += 1

    def close(self) -> None:
        """Stop the thread and write what is left (normal shutdown loses nothing)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        self._thread = None
        if self.pending():
            self.flush()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="hebdo-events", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the database is away: keep the events, try again
                log.exception("writing %d tracking events failed; retrying", self.pending())
