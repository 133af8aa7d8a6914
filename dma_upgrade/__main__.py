"""``python -m dma_upgrade``: the dma-upgrade command line."""

from dma_upgrade.adapters.cli.main import app

app(prog_name="dma-upgrade")
