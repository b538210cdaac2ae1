"""geo_service: grids, repair stalls and vendor clusters for Chinese city management."""

__version__ = "0.1.0"
