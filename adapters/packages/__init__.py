"""Upgrade packages: reading a .dmupgrade archive, storing it by hash, accepting an upload."""
