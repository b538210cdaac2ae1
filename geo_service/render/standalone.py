"""A Folium map as ONE self-contained HTML file: every script and stylesheet the page links
(all vendored under ``render/static/``) is written into the page, and the images a stylesheet
refers to become ``data:`` URLs. Such a file opens from disk, a USB stick or an e-mail with no
server and no CDN; only the basemap tiles come from the network (and the map works without them).
"""

from __future__ import annotations

import base64
import mimetypes
import re
from dataclasses import replace
from pathlib import Path

import folium

from geo_service.render.maps.assets import STATIC_DIR
from geo_service.render.maps.page import PageOptions, render_html

MARK = "geo-static-inline:/"
"""``static_base`` while rendering: every link to a vendored file starts with it."""

_SCRIPT = re.compile(r'<script src="' + re.escape(MARK) + r'([^"]+)"></script>')
_STYLE = re.compile(r'<link rel="stylesheet" href="' + re.escape(MARK) + r'([^"]+)"\s*/?>')
_CSS_URL = re.compile(r"url\(\s*(['\"]?)(?!data:|#|https?:|/)([^)'\"]+)\1\s*\)")
_SOURCE_MAP = re.compile(r"^\s*(//# sourceMappingURL=\S+|/\*# sourceMappingURL=[^*]*\*/)\s*$", re.M)


class NotInlined(RuntimeError):
    """A page still links a vendored file after inlining (a link form this module missed)."""


def _asset(rel: str) -> Path:
    path = (STATIC_DIR / rel).resolve()
    if STATIC_DIR.resolve() not in path.parents:
        raise NotInlined(f"{rel} is outside {STATIC_DIR}")
    return path


def _data_url(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _script(match: re.Match[str]) -> str:
    text = _SOURCE_MAP.sub("", _asset(match.group(1)).read_text(encoding="utf-8"))
    # "</script" inside the code would end the element early.
    return "<script>" + text.replace("</script", "<\\/script") + "</script>"


def _style(match: re.Match[str]) -> str:
    path = _asset(match.group(1))
    text = _SOURCE_MAP.sub("", path.read_text(encoding="utf-8"))

    def image(m: re.Match[str]) -> str:
        target = (path.parent / m.group(2)).resolve()
        return f'url("{_data_url(target)}")' if target.is_file() else m.group(0)

    return "<style>" + _CSS_URL.sub(image, text).replace("</style", "<\\/style") + "</style>"


def inline_assets(page: str) -> str:
    """``page`` (rendered with ``static_base=MARK``) with its vendored files written inline."""
    out = _STYLE.sub(_style, _SCRIPT.sub(_script, page))
    if MARK in out:
        raise NotInlined(f"a link to {MARK} was not inlined")
    return out


def standalone_html(m: folium.Map, options: PageOptions) -> str:
    """The map as one HTML file that needs nothing but (optionally) basemap tiles."""
    return inline_assets(render_html(m, replace(options, static_base=MARK)))
