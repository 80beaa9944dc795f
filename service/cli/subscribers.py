"""`hebdo subscribers …`"""

from __future__ import annotations

import click


@click.group("subscribers")
def subscribers_group() -> None:
    """Import, export and manage subscribers."""
