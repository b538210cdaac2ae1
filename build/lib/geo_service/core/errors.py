"""The one kind of error a caller can fix: bad input, named by its field.

Every layer raises a subclass of ``InputError``; the web layer maps it to its ``status`` once
(``web.errors``), the CLI prints it. Messages quote at most ``QUOTE_LIMIT`` characters of the
bad value, so a 10 MB parameter never comes back as a 10 MB answer.
"""

from __future__ import annotations

import reprlib
from typing import Any

QUOTE_LIMIT = 100
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 6
_REPR.maxstring = _REPR.maxother = QUOTE_LIMIT


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters with an ellipsis and the full length."""
    if isinstance(value, str):
        shown = repr(value[:limit])
        return shown if len(value) <= limit else f"{shown[:-1]}…{shown[-1]} ({len(value):,} chars)"
    text = _REPR.repr(value)  # depth-bounded: a 1,000-deep list is no RecursionError
    return text if len(text) <= limit else f"{text[:limit]}…"


class InputError(ValueError):
    """Input the caller can fix; ``field`` names it and ``status`` is the HTTP answer."""

    status: int = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFoundError(InputError):
    """A code or path that names nothing."""

    status = 404
