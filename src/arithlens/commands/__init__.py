"""CLI commands, one module per command family; each module has `register(app)`."""
