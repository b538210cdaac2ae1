"""What runs geo_service in production (nginx, systemd, PostgreSQL primary + replica), and the
loopback arrangement that runs the same files on one machine (``python -m deploy.loopback``)."""
