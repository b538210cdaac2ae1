"""Interactive maps (Folium) for officers, planners and residents.

No web framework here: the API router and the CLI call these builders. Every page is drawn in
the coordinate system of its basemap (``basemaps.py``) and links only self-hosted assets
(``assets.py``).
"""
