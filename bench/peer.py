"""django-newsletter sending the same edition into the same sink, in its own virtual environment.

    python -m bench.peer --readers 1000 --smtp 127.0.0.1:PORT --html edition.html

Creates (once) a virtual environment with django-newsletter from the package registry,
pinned below, writes a minimal Django project around it (SQLite, the sites framework,
Django's SMTP backend pointed at the sink), creates N subscribers and one message whose
article is Hebdo's rendered edition, then times `Submission.submit()`: what django-
newsletter's `submit_newsletter` command runs. Hebdo's code never imports it; bench.table
calls `run()` to put it beside Hebdo in the same table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

PINS = ["django-newsletter==1.2.1", "Django==5.2.19", "sorl-thumbnail==13.4.0"]

_SETTINGS = """
SECRET_KEY = "bench"
INSTALLED_APPS = [
    "django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sites",
    "sorl.thumbnail", "newsletter",
]
NEWSLETTER_THUMBNAIL = "sorl-thumbnail"
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
ROOT_URLCONF = "peer_urls"
SITE_ID = 1
USE_TZ = True
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}}]
EMAIL_HOST, EMAIL_PORT = {host!r}, {port}
DEFAULT_FROM_EMAIL = "banc@hebdo.example"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""

_URLS = """
from django.urls import include, path
urlpatterns = [path("newsletter/", include("newsletter.urls"))]
"""

_RUN = """
import json, logging, sys, time
import django
django.setup()

class Count(logging.Handler):  # django-newsletter logs a failed send and goes on
    failed = 0
    def emit(self, record):
        Count.failed += record.levelno >= logging.ERROR

logging.getLogger("newsletter").addHandler(Count())
from django.core.management import call_command
from django.utils.timezone import now
from newsletter.models import Article, Message, Newsletter, Submission, Subscription

readers, html_path = int(sys.argv[1]), sys.argv[2]
call_command("migrate", verbosity=0)
letter = Newsletter.objects.create(
    title="Intelligence & Société", slug="lettre", email="banc@hebdo.example", sender="Hebdo"
)
Subscription.objects.bulk_create(
    Subscription(
        newsletter=letter, name_field=f"Lecteur {n}", email_field=f"lecteur{n}@exemple.org",
        subscribed=True, subscribe_date=now(),
    )
    for n in range(readers)
)
message = Message.objects.create(title="Édition", slug="edition", newsletter=letter)
Article.objects.create(
    post=message, sortorder=1, title="L'édition", text=open(html_path, encoding="utf-8").read()
)
submission = Submission.from_message(message)
submission.publish_date = now()
submission.save()
size = len(submission.get_message(submission.subscriptions.first()).message().as_bytes())
cpu, started = time.process_time(), time.perf_counter()
submission.submit()
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({
    "messages": readers, "failed": Count.failed, "seconds": seconds, "cpu": cpu,
    "message_bytes": size,
}))
"""


def _venv(folder: Path) -> Path:
    python, installed = folder / "bin" / "python", folder / "pins.txt"
    if not installed.exists() or installed.read_text() != "\n".join(PINS):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PINS], check=True, capture_output=True
        )
        installed.write_text("\n".join(PINS))
    return python


def run(workdir: Path, readers: int, smtp: str, html: str) -> dict[str, Any]:
    """Send to `readers` with django-newsletter into the SMTP server at host:port."""
    python = _venv(workdir / "venv-django-newsletter")
    project = workdir / "django-newsletter"
    project.mkdir(exist_ok=True)
    host, _, port = smtp.rpartition(":")
    (project / "peer_settings.py").write_text(
        _SETTINGS.format(db=str(project / "db.sqlite3"), host=host, port=int(port))
    )
    (project / "peer_urls.py").write_text(textwrap.dedent(_URLS))
    (project / "run.py").write_text(textwrap.dedent(_RUN))
    (project / "edition.html").write_text(html, encoding="utf-8")
    (project / "db.sqlite3").unlink(missing_ok=True)
    result = subprocess.run(
        [str(python), "run.py", str(readers), str(project / "edition.html")],
        cwd=project,
        env={"DJANGO_SETTINGS_MODULE": "peer_settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"django-newsletter run failed:\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    if figures["failed"]:
        raise RuntimeError(f"django-newsletter failed {figures['failed']} sends:\n{result.stderr}")
    figures["messages_per_second"] = figures["messages"] / figures["seconds"]
    figures["package"] = PINS[0]
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run once and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--smtp", required=True, help="host:port of the sink")
    parser.add_argument("--html", type=Path, required=True, help="the edition's HTML")
    parser.add_argument("--workdir", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    figures = run(args.workdir.resolve(), args.readers, args.smtp, args.html.read_text("utf-8"))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
