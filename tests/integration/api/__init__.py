"""The HTTP API through real HTTP on a real port."""
