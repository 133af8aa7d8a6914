"""dma-upgrade: the event-sourced upgrade engine for DataMiner Agents.

The import package of the product. Its parts live at the top of the repository (``engine/``,
``projections/``, ``adapters/``) and are linked here, so everything installed is under ``dma_upgrade``.
"""
