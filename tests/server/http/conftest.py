"""Fixtures of the HTTP tests; the helpers live in http_support (a unique module name)."""

from http_support import *  # noqa: F403
