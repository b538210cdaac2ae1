"""Progress of long CLI work in named stages (rich, on stderr): a bar where the work can be
counted, a spinner where it cannot. Transient, and silent when stderr is not a terminal, so
piped or ``--json`` output stays clean."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

Advance = Callable[[int], None]
Stage = Callable[..., AbstractContextManager[Advance]]


@contextmanager
def stage_progress(console: Console) -> Iterator[Stage]:
    """``with stage_progress(err) as stage: with stage("读取数据"): ...``; ``stage(text, n)``
    yields ``advance(k)`` for work counted in ``n`` steps."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:

        @contextmanager
        def stage(description: str, total: int | None = None) -> Iterator[Advance]:
            task = progress.add_task(description, total=total)
            try:
                yield lambda n: progress.advance(task, n)
            finally:
                done = total if total is not None else 1
                progress.update(task, total=done, completed=done)

        yield stage
