"""The admin HTTP API: deployments, services, invocation control, health and version."""

from pyrestate.server.admin.app import AdminApp

__all__ = ["AdminApp"]
