"""Model serving: a LiteRT model behind KServe's Python model server (``harness serve-model``)."""
