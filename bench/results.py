"""bench/RESULTS.md: one section per benchmark, between its own markers, replaced on each run.

Also the bits of a section every benchmark needs: the machine, the exact command, a table printed
with rich and recorded as markdown.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"


def write_section(name: str, lines: list[str]) -> None:
    """Replace (or append) the section of benchmark ``name`` with ``lines``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = "\n".join([start, *lines, end])
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    print(f"recorded in {RESULTS.relative_to(ROOT)}")


def machine() -> str:
    """CPUs, CPU model, Python and load average: enough to compare runs."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average before the run {load}"
    )


def begin(argv: list[str] | None) -> tuple[list[str], str, float]:
    """What a run's section records: its arguments as given (``main(argv)`` or the command
    line), the machine before it starts, and when it started (``time.perf_counter``)."""
    return (sys.argv[1:] if argv is None else argv), machine(), time.perf_counter()


def command(module: str, argv: list[str]) -> str:
    return shlex.join([Path(sys.executable).name, "-m", module, *argv])


def stamp() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def markdown_table(heads: list[str], rows: list[list[str]]) -> str:
    """The rows printed by ``print_table``, as a GitHub markdown table."""
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in row]
        if cells[0].startswith("  "):  # a detail of the row above (markdown trims the indent)
            cells[0] = "↳ " + cells[0].strip()
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_table(title: str, heads: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for head in heads:
        table.add_column(head)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)
