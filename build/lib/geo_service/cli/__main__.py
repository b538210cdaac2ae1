"""``python -m geo_service.cli``."""

from geo_service.cli.main import app

app()
