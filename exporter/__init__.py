"""mattex.exporter."""
