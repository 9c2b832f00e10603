"""Runnable versions of the patterns of the Restate documentation, built on `pyrestate.sdk`."""
