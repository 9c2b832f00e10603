"""pyrestate SDK: write durable handlers; source-compatible with the official `restate` Python SDK.

Swap `import restate` for `import pyrestate.sdk as restate`.
"""

from pyrestate.sdk import logging
from pyrestate.sdk.asyncio import as_completed, gather, select, wait_completed
from pyrestate.sdk.client import ConnectError, create_client
from pyrestate.sdk.client_types import HttpError, RestateClient, RestateClientSendHandle
from pyrestate.sdk.context import (
    Context,
    DurablePromise,
    ObjectContext,
    ObjectSharedContext,
    Request,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    RunOptions,
    ScopedContext,
    SendHandle,
    WorkflowContext,
    WorkflowSharedContext,
)
from pyrestate.sdk.endpoint import Endpoint, app
from pyrestate.sdk.exceptions import (
    RetryableError,
    SdkInternalBaseException,
    TerminalError,
    is_internal_exception,
)
from pyrestate.sdk.logging import RestateLoggingFilter, getLogger
from pyrestate.sdk.serde import BytesSerde, DefaultSerde, JsonSerde, PydanticJsonSerde, Serde
from pyrestate.sdk.serve import serve
from pyrestate.sdk.service import InvocationRetryPolicy, Service, VirtualObject, Workflow

__all__ = [
    "BytesSerde",
    "ConnectError",
    "Context",
    "DefaultSerde",
    "DurablePromise",
    "Endpoint",
    "HttpError",
    "InvocationRetryPolicy",
    "JsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "PydanticJsonSerde",
    "Request",
    "RestateClient",
    "RestateClientSendHandle",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RestateLoggingFilter",
    "RetryableError",
    "RunOptions",
    "ScopedContext",
    "SdkInternalBaseException",
    "SendHandle",
    "Serde",
    "Service",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "as_completed",
    "create_client",
    "gather",
    "getLogger",
    "is_internal_exception",
    "logging",
    "select",
    "serve",
    "wait_completed",
]
