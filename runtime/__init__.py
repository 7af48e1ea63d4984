"""mattex.runtime."""
