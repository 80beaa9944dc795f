"""The Celery app, configured from Settings when first used (not at import)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from service import queue
from service.config import Settings
from service.sending import schedule
from worker import sql_transport

sql_transport.install()  # the embedded broker survives a full disk (see the module)
app = Celery(
    "hebdo",
    include=[
        "worker.tasks.sending",
        "worker.tasks.confirmations",
        "worker.tasks.maintenance",
        "worker.tasks.webhooks",
    ],
)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from Hebdo's."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,  # state lives in the database, not in a result backend
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "task_default_queue": queue.QUEUE,
        "timezone": "UTC",
        "beat_schedule": {
            "dispatch-due": {"task": queue.DISPATCH_DUE, "schedule": schedule.SWEEP_SECONDS},
            "confirmations-due": {"task": queue.CONFIRMATIONS_DUE, "schedule": 60.0},
            "purge-rate-windows": {"task": queue.PURGE_RATE_WINDOWS, "schedule": 3600.0},
            "deliver-webhooks": {"task": queue.DELIVER_WEBHOOKS, "schedule": 5.0},
            "schedule-next-issues": {"task": queue.SCHEDULE_NEXT_ISSUES, "schedule": 60.0},
        },
    }


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(Settings.from_env()))
