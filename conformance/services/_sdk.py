"""Pick the SDK the contract services are built on.

PYRESTATE_SDK=pyrestate builds them on `pyrestate.sdk` (source-compatible with the official API);
anything else, or unset, on the official `restate` package.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

SDK_NAME = os.environ.get("PYRESTATE_SDK", "official")

restate: ModuleType
if SDK_NAME == "pyrestate":
    restate = importlib.import_module("pyrestate.sdk")
else:
    restate = importlib.import_module("restate")

serde: ModuleType = importlib.import_module(f"{restate.__name__}.serde")

__all__ = ["SDK_NAME", "restate", "serde"]
