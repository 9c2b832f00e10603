"""pyrestate: a durable-execution engine and SDK compatible with Restate."""

__version__ = "0.1.0"
