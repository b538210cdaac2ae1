"""Where the data lives (embedded files or PostGIS), the audit log, and the reloader that keeps
the in-memory snapshot in step with it. ``geo_service.runtime`` opens the one the settings
choose."""
