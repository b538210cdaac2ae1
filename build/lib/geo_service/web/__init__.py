"""The HTTP layer: thin FastAPI routers over the spatial core."""
