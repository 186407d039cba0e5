"""``janitor.queue`` names, mapped onto ``janitor_runner``."""

from typing import Any

import janitor_runner

from ._shapes import to_pool


def Queue(conn: Any) -> janitor_runner.Queue:  # noqa: N802 - the upstream class name
    return janitor_runner.Queue(to_pool(conn))
