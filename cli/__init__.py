"""mattex.cli: the `mattex` command (Typer), a thin layer over the library."""
