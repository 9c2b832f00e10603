"""The `pyrestate` command line."""
