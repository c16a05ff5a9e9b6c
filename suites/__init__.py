"""Protocol TOML files (one per suite and preset) and the default check tolerances: jembench.resources.protocols."""
