"""Find a font that draws Chinese, independent of matplotlib's font cache.

matplotlib caches the fonts it saw when the cache was first built (``fontlist-*.json`` in
``MPLCONFIGDIR``); a CJK font installed later stays invisible to ``findfont`` until the cache is
deleted, so "no CJK font installed" was reported on machines that had one. Here the font file is
found from the system itself (``GEO_SERVICE_CJK_FONT``, then fontconfig, then the standard font
folders, the matplotlib cache last), every candidate is opened to check it really has glyphs for
Chinese text, and the winner is registered with matplotlib so a stale cache does not matter.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "GEO_SERVICE_CJK_FONT"
PROBE_TEXT = "网格小蓝棚修车"  # characters every label we print needs
FONT_SUFFIXES = (".ttf", ".ttc", ".otf", ".otc")
FC_LIST_TIMEOUT_S = 5.0

# File-name stems of well-known CJK fonts, best first (sans before serif, regular before bold).
_KNOWN = (
    "notosanscjksc",
    "notosanssc",
    "notosanscjk",
    "sourcehansanssc",
    "sourcehansanscn",
    "sourcehansans",
    "wqy-zenhei",
    "wqy-microhei",
    "msyh",
    "pingfang",
    "simhei",
    "droidsansfallback",
    "notoserifcjksc",
    "notoserifsc",
    "notoserifcjk",
    "sourcehanserif",
    "simsun",
    "ukai",
    "uming",
)
_FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
    "~/Library/Fonts",
    "C:/Windows/Fonts",
)
_MATPLOTLIB_FAMILIES = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
    "Droid Sans Fallback",
    "Noto Serif CJK SC",
)


@dataclass(frozen=True)
class CjkFont:
    """A font file with Chinese glyphs; ``face`` is the face to use inside a collection."""

    path: Path
    face: int
    family: str
    source: str  # "env", "fontconfig", "font folders" or "matplotlib cache"


def cjk_font_path() -> Path | None:
    """The file of a font that draws Chinese, or None. Registered with matplotlib when found."""
    found = cjk_font()
    return found.path if found else None


def cjk_font_family() -> str | None:
    """The matplotlib family name of that font (its Simplified Chinese face), or None."""
    found = cjk_font()
    return found.family if found else None


def cjk_font() -> CjkFont | None:
    """The CJK font to use, looked up once per value of ``GEO_SERVICE_CJK_FONT``."""
    return _lookup(os.environ.get(ENV_VAR, "").strip())


def missing_font_message() -> str:
    """Why no font was found and how to fix it (Chinese and English), for CLI/log output."""
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        return (
            f"{ENV_VAR}={override} 不是含中文字形的字体文件 / is not a font file with Chinese "
            "glyphs"
        )
    return (
        "未找到中文字体 / no CJK font found: install one (Debian: apt-get install "
        f"fonts-noto-cjk) or set {ENV_VAR} to a .ttf/.ttc/.otf file"
    )


def clear_cache() -> None:
    """Forget the lookup (fonts installed or the override changed while running)."""
    _lookup.cache_clear()


@functools.lru_cache(maxsize=8)
def _lookup(override: str) -> CjkFont | None:
    if override:
        found = _verify(Path(override).expanduser(), "env")
    else:
        found = next(
            (
                font
                for source, paths in (
                    ("fontconfig", _rank(_fontconfig())),
                    ("font folders", _rank(_scan_dirs())),
                    ("matplotlib cache", _matplotlib_cache()),
                )
                for path in paths
                if (font := _verify(path, source)) is not None
            ),
            None,
        )
    if found is not None:
        _register(found.path)
    return found


def _verify(path: Path, source: str) -> CjkFont | None:
    """The face of ``path`` that has every probe glyph (a Simplified Chinese face preferred)."""
    from matplotlib.ft2font import FT2Font

    if not path.is_file():
        return None
    try:
        first = FT2Font(str(path))
        faces = [first] + [FT2Font(str(path), face_index=i) for i in range(1, first.num_faces)]
    except (OSError, RuntimeError, ValueError):
        return None
    usable = [
        (i, face)
        for i, face in enumerate(faces)
        if all(face.get_char_index(ord(ch)) for ch in PROBE_TEXT)
    ]
    if not usable:
        return None
    index, face = min(usable, key=lambda item: (not _is_simplified(item[1].family_name), item[0]))
    return CjkFont(path.resolve(), index, face.family_name, source)


def _is_simplified(family: str) -> bool:
    return bool(re.search(r"\b(SC|CN|GB)\b|Hei|YaHei|Sim", family))


def _fontconfig() -> list[Path]:
    exe = shutil.which("fc-list")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "-f", "%{file}\n", ":lang=zh"],
            capture_output=True,
            text=True,
            timeout=FC_LIST_TIMEOUT_S,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [Path(line) for line in out.splitlines() if line.lower().endswith(FONT_SUFFIXES)]


def _font_dirs() -> Iterator[Path]:
    xdg = os.environ.get("XDG_DATA_DIRS", "/usr/local/share:/usr/share")
    dirs = [*_FONT_DIRS, *(f"{d}/fonts" for d in xdg.split(os.pathsep) if d)]
    if sys.platform == "win32" and (windir := os.environ.get("WINDIR")):
        dirs.append(f"{windir}/Fonts")
    seen: set[Path] = set()
    for d in dirs:
        path = Path(d).expanduser()
        if path not in seen and path.is_dir():
            seen.add(path)
            yield path


def _scan_dirs() -> list[Path]:
    """Font files in the standard folders whose names look like a known CJK font."""
    return [
        path
        for folder in _font_dirs()
        for path in folder.rglob("*")
        if path.suffix.lower() in FONT_SUFFIXES and _known_rank(path) is not None
    ]


def _known_rank(path: Path) -> int | None:
    stem = path.stem.lower().replace(" ", "").replace("_", "")
    return next((i for i, key in enumerate(_KNOWN) if key in stem), None)


def _rank(paths: Iterable[Path]) -> list[Path]:
    """Known fonts first in ``_KNOWN`` order, regular weights before bold/light."""

    def key(path: Path) -> tuple[int, int, str]:
        rank = _known_rank(path)
        stem = path.stem.lower()
        heavy = any(w in stem for w in ("bold", "black", "heavy", "light", "thin", "medium"))
        return (len(_KNOWN) if rank is None else rank, int(heavy), str(path))

    return sorted(dict.fromkeys(paths), key=key)


def _matplotlib_cache() -> list[Path]:
    from matplotlib import font_manager

    by_name = {entry.name: entry.fname for entry in font_manager.fontManager.ttflist}
    return [Path(by_name[name]) for name in _MATPLOTLIB_FAMILIES if name in by_name]


_registered: set[Path] = set()


def _register(path: Path) -> None:
    """Add the file to matplotlib's font list so ``family=cjk_font_family()`` resolves."""
    from matplotlib import font_manager

    if path in _registered:
        return
    known = {Path(entry.fname) for entry in font_manager.fontManager.ttflist}
    if path not in known:
        font_manager.fontManager.addfont(str(path))
    _registered.add(path)
