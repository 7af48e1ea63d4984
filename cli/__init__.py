"""mattex.cli."""
