"""Serve a space over HTTP: search, embed and a web page (FastAPI + uvicorn)."""
