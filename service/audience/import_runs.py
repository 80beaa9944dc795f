"""A CSV import run in the background, reporting its progress through a queue.

The web door spools the upload to a file, starts a run and streams the events it
puts on `events` (one `ImportProgress` per batch, then `ImportDone` or
`ImportFailed`); the run owns its transactions (batch by batch), enqueues the
confirmation mails once every batch is committed, and deletes the file.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from contextlib import suppress
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from service.audience import confirmations, imports
from service.audience.imports import ImportProgress, ImportReport
from service.team import audit

IMPORT_BATCH = 1000  # rows per transaction, and per progress line


@dataclass(frozen=True)
class ImportFailed:
    """The run stopped: `message` says why, or is empty for an unexpected error."""

    message: str


@dataclass(frozen=True)
class ImportDone:
    report: ImportReport


ImportEvent = ImportProgress | ImportFailed | ImportDone


class ImportRun:
    """One import in a background thread, reporting through a queue."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        newsletter_id: int,
        path: str,
        *,
        confirmed: bool,
        reason: str | None,
        batch_size: int = IMPORT_BATCH,
        logger: logging.Logger,
        enqueue: confirmations.Enqueue,
        who: audit.Who | None = None,
    ) -> None:
        self.events: queue.Queue[ImportEvent] = queue.Queue()
        self._enqueue = enqueue
        self._factory = factory
        self._newsletter_id = newsletter_id
        self._path = path
        self._confirmed = confirmed
        self._reason = reason
        self._batch_size = batch_size
        self._logger = logger
        self._who = who
        # Not a daemon: an editor closing the tab must not cut the import mid-batch.
        self.thread = threading.Thread(target=self._work, name="hebdo-import")

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.thread.join()

    def _work(self) -> None:
        event: ImportEvent
        try:
            report = imports.import_csv_batched(
                self._factory,
                self._newsletter_id,
                self._path,
                confirmed=self._confirmed,
                confirmed_reason=self._reason,
                progress=self.events.put,
                batch_size=self._batch_size,
                who=self._who,
            )
            if report.confirmations_queued:
                # Every batch is committed: the workers can see the rows.
                self._enqueue(self._newsletter_id)
            event = ImportDone(report)
        except ValueError as exc:  # ImportAborted among them: the file cannot be read
            event = ImportFailed(str(exc))
        except Exception:
            self._logger.exception("subscriber import failed")
            event = ImportFailed("")
        finally:
            with suppress(OSError):
                os.unlink(self._path)
        self.events.put(event)
