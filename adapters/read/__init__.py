"""Queries over the read models and the views drawn from them (progress, history)."""
