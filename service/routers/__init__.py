"""API routers, one per resource (FastAPI's "Bigger Applications" layout)."""
