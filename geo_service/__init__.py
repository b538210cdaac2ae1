"""geo_service: grids, repair stalls and vendor clusters for Chinese city management."""

__version__ = "0.3.0"  # the one definition (pyproject.toml reads it); see CHANGELOG.md
