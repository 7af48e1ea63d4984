"""mattex.plugins."""
