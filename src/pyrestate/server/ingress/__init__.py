"""The ingress HTTP API: invocations, attach/output, awakeables, health."""

from pyrestate.server.ingress.app import IngressApp

__all__ = ["IngressApp"]
