"""Fixtures of the invoker tests; the helpers live in invoker_support (a unique module name)."""

from invoker_support import *  # noqa: F403
