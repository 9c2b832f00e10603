"""Pure replay state machine of the SDK side of the Restate service protocol (V5/V6).

No asyncio and no IO: bytes go in through `feed`, framed messages come out through `take_output`. User-code
"syscalls" either check themselves against the next replayed command or emit a new one.
"""

from pyrestate.protocol.outcome import Failure
from pyrestate.sdk._vm.machine import VM
from pyrestate.sdk._vm.results import (
    CANCEL_SIGNAL,
    AllCompleted,
    AnyCompleted,
    CancelSignalReceived,
    ExecuteRun,
    Invocation,
    InvocationIdResult,
    Progress,
    RunRetryConfig,
    StateKeysResult,
    Suspended,
    Value,
    VMError,
    VMState,
    Void,
    WaitExternal,
)

__all__ = [
    "CANCEL_SIGNAL",
    "VM",
    "AllCompleted",
    "AnyCompleted",
    "CancelSignalReceived",
    "ExecuteRun",
    "Failure",
    "Invocation",
    "InvocationIdResult",
    "Progress",
    "RunRetryConfig",
    "StateKeysResult",
    "Suspended",
    "VMError",
    "VMState",
    "Value",
    "Void",
    "WaitExternal",
]
