"""Run every ``bench/bench_*.py`` module's ``main()`` in turn (``make bench``).

A module that fails to import or run is reported and the others still run; the exit status is
non-zero if any failed.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def modules() -> list[str]:
    return sorted(f"bench.{p.stem}" for p in BENCH_DIR.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.run_all [name ...]``: all benchmarks, or those whose name matches."""
    wanted = sys.argv[1:] if argv is None else argv
    failed: list[str] = []
    for name in modules():
        if wanted and not any(w in name for w in wanted):
            continue
        print(f"=== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(name)
            entry = getattr(module, "main", None)
            if entry is None:
                print(f"{name} has no main(); skipped", flush=True)
                continue
            saved, sys.argv = sys.argv, [name]  # each main() sees no command-line arguments
            try:
                entry()
            finally:
                sys.argv = saved
        except SystemExit as exc:
            if exc.code not in (0, None):
                failed.append(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"=== {name} took {time.perf_counter() - t0:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
