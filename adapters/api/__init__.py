"""The HTTP API (FastAPI): routes, the token guard, error answers and the web pages, on the wired services."""
