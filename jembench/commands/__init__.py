"""CLI subcommands, discovered by :mod:`jembench.cli` (one module per command)."""
