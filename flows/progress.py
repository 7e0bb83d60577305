"""A process-wide progress reporter the CLI installs (rich bars); flows call ``report``.

Flows stay free of terminal concerns: with no reporter installed, reports go nowhere.
"""

from __future__ import annotations

from collections.abc import Callable

Reporter = Callable[[str, int, int], None]
_reporter: Reporter | None = None


def set_reporter(fn: Reporter | None) -> None:
    global _reporter
    _reporter = fn


def report(stage: str, done: int, total: int) -> None:
    if _reporter is not None:
        _reporter(stage, done, total)
