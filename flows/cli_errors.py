"""The one way every biolake command ends on an expected error: one line on stderr, exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

errors = Console(stderr=True)


def fail(message: object) -> NoReturn:
    """One error line on stderr (``biolake sql ... > out.csv`` keeps it out of the output), exit
    code 2: the message as written (no markup read in it, no line broken inside a path at the
    terminal's width: the terminal wraps it)."""
    errors.print(f"[red]error:[/red] {escape(str(message))}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def require_warehouse(home: Path) -> None:
    """Stop a command that needs a warehouse, run on a home that has none (a typo in --home must not
    look like success: ``flows.settings.missing_warehouse`` says why), with its one error line."""
    from flows.settings import missing_warehouse

    problem = missing_warehouse(home)
    if problem:
        fail(problem)
