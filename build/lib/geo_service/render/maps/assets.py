"""Self-hosted scripts and stylesheets for the Folium maps.

Folium and its plugins link Leaflet, jQuery, Bootstrap, Font Awesome and plugins from public
CDNs, which are slow or blocked in China and unreachable on a closed government network. Before a
map is rendered, every element's links are rewritten to the copies vendored in
``geo_service/static/vendor/`` (or dropped when the maps do not use the library); a link nobody
vendored is an error, not a silent CDN request.

``base`` is where ``static/`` is reachable from the page: ``/static/`` when the service serves the
map, or a relative path such as ``static/`` for the files ``geo-service maps build`` writes (it
copies the assets next to them, so the folder works from a file server or ``file://``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from branca.element import Element

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Folium's resource names -> file under static/ (None: the maps do not need it).
VENDORED: dict[str, str | None] = {
    "leaflet": "vendor/leaflet/leaflet.js",
    "leaflet_css": "vendor/leaflet/leaflet.css",
    "markerclusterjs": "vendor/leaflet.markercluster/leaflet.markercluster.js",
    "markerclustercss": "vendor/leaflet.markercluster/MarkerCluster.css",
    "markerclusterdefaultcss": "vendor/leaflet.markercluster/MarkerCluster.Default.css",
    "Control_locate_min_js": "vendor/leaflet.locatecontrol/L.Control.Locate.min.js",
    "Control_locate_min_css": "vendor/leaflet.locatecontrol/L.Control.Locate.min.css",
    # Markers are L.divIcons and legends plain HTML: no jQuery, Bootstrap or icon fonts.
    "jquery": None,
    "bootstrap": None,
    "bootstrap_css": None,
    "glyphicons_css": None,
    "awesome_markers": None,
    "awesome_markers_css": None,
    "awesome_markers_font_css": None,
    "awesome_rotate_css": None,
}

# Our own elements link their files as "static:<path under static/>".
LOCAL_PREFIX = "static:"

# Files and folders (under static/) copied next to statically written maps.
ASSETS = (
    "vendor/leaflet",
    "vendor/leaflet.markercluster",
    "vendor/leaflet.locatecontrol",
    "resident/coords.js",
    "maps",
)


class UnvendoredAsset(RuntimeError):
    """A map element links a script or stylesheet that is not vendored."""


def _walk(element: Element) -> Iterator[Element]:
    yield element
    for child in list(element._children.values()):
        yield from _walk(child)


def _rewrite(links: list[tuple[str, str]], base: str) -> list[tuple[str, str]]:
    out = []
    for name, url in links:
        if url.startswith(LOCAL_PREFIX):
            out.append((name, base + url.removeprefix(LOCAL_PREFIX)))
            continue
        if name not in VENDORED:
            raise UnvendoredAsset(f"{name} ({url}) is not vendored in geo_service/static/vendor")
        path = VENDORED[name]
        if path is not None:
            out.append((name, base + path))
    return out


def localise(root: Element, base: str) -> None:
    """Point every element's script/stylesheet links at ``base`` (the URL of ``static/``)."""
    for element in _walk(root):
        for attr in ("default_js", "default_css"):
            links = getattr(element, attr, None)
            if links:
                # An instance attribute: the class-level lists are shared by every map.
                setattr(element, attr, _rewrite(links, base))


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.urls.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.urls.append(values["href"] or "")


def external_links(html: str) -> list[str]:
    """Script and stylesheet URLs of a page that point to another host."""
    parser = _LinkParser()
    parser.feed(html)
    return [u for u in parser.urls if u.startswith(("http:", "https:", "//"))]


def copy_assets(out_dir: Path) -> Path:
    """Copy the files the maps link into ``out_dir/static/``; returns that folder."""
    target = Path(out_dir) / "static"
    for sub in ASSETS:
        source = STATIC_DIR / sub
        if source.is_dir():
            shutil.copytree(source, target / sub, dirs_exist_ok=True)
        else:
            (target / sub).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / sub)
    return target
