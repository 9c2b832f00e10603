"""The `pyrestate` subcommands, one module per command group; `cli.main` gathers them."""
