"""Who may call the API: roles and the token file, kept by ``dma-upgrade tokens`` and read by the API."""
