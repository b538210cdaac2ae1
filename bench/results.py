"""Sections of ``bench/RESULTS.md``: each benchmark replaces only its own section."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\n"
    "One section per benchmark, rewritten by its module (`python -m bench.<module>`); "
    "`make bench` runs them all. Ratios compare against baselines measured in the same run.\n"
)


def machine() -> str:
    """nproc, CPU model, Python and load average: enough to compare runs."""
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


def command(module: str, argv: list[str]) -> str:
    return shlex.join([Path(sys.executable).name, "-m", module, *argv])


def markdown_table(heads: list[str], rows: list[list[str]]) -> str:
    """The rows printed by ``print_table``, as a GitHub markdown table."""
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in row]
        if cells[0].startswith("  "):  # a detail of the row above (markdown trims the indent)
            cells[0] = "↳ " + cells[0].strip()
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(title: str, body: str, path: Path = RESULTS) -> None:
    """Replace the ``## title`` section (up to the next ``## ``) or append it."""
    text = path.read_text() if path.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def stamp() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def print_table(title: str, heads: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for head in heads:
        table.add_column(head)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)
