"""The `geo-service` command line."""
