"""The public names of pyrestate.sdk pinned against the official `restate` module (restate-sdk 1.3.0).

Every difference is listed here on purpose: a new official name, or one of ours going away, fails a test.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest
import restate as official

import pyrestate.sdk as ours

# In the official SDK, not in ours.
MISSING_TOP_LEVEL = {
    "JournalValueCodec",  # journal value codecs: app()/create_client() refuse one
    "JournalValueCodecProvider",
    "connect",  # Restate Cloud tunnel (compiled, closed protocol)
    "with_connection",
    "create_test_harness",  # docker-based harness; pyrestate.testing runs real servers instead
    "test_harness",
    "HarnessEnvironment",
}
# Ours only: conveniences re-exported at the top (the official SDK has them in submodules or not at all).
EXTRA_TOP_LEVEL = {
    "BytesSerde",
    "DefaultSerde",
    "JsonSerde",
    "PydanticJsonSerde",
    "Serde",
    "Request",
    "RetryableError",
    "Endpoint",
    "serve",
    "ConnectError",  # official: in __all__ too, but from its Cloud connection module
}

# Submodules user code imports from, with the differences in the classes and functions they define.
SUBMODULES: dict[str, tuple[set[str], set[str]]] = {
    # module: (official only, ours only)
    "serde": (
        {
            "DaciteFromDict",
            "DaciteToDict",
            "MsgspecJsonAPI",
            "MsgspecJsonSerde",
            "try_import_from_dacite",
            "try_import_msgspec_api",
            "try_import_pydantic_base_model",
        },
        set(),
    ),
    "exceptions": (set(), set()),
    "context": (set(), set()),
    "client_types": (set(), set()),
    "client": (set(), {"ConnectError"}),
    "logging": (set(), {"is_replaying"}),
    "asyncio": (set(), set()),
}


def _defined(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "") == module.__name__
    }


def test_top_level_names() -> None:
    theirs, mine = set(official.__all__), set(ours.__all__)
    assert theirs - mine == MISSING_TOP_LEVEL
    assert mine - theirs == EXTRA_TOP_LEVEL - {"ConnectError"}
    assert "ConnectError" in theirs and "ConnectError" in mine
    for name in mine:
        assert getattr(ours, name) is not None, name


@pytest.mark.parametrize("module", sorted(SUBMODULES))
def test_submodule_names(module: str) -> None:
    theirs = _defined(importlib.import_module(f"restate.{module}"))
    mine = _defined(importlib.import_module(f"pyrestate.sdk.{module}"))
    only_official, only_ours = SUBMODULES[module]
    assert theirs - mine == only_official
    assert mine - theirs == only_ours


def _params(fn: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


CLIENT_EXTRAS = {  # attach / output: the official client has none
    "attach_invocation",
    "get_invocation_output",
    "service_attach",
    "service_output",
    "object_attach",
    "object_output",
    "workflow_attach",
    "workflow_output",
}


@pytest.mark.parametrize(
    ("theirs", "mine"),
    [
        ("restate.client_types.RestateClient", "pyrestate.sdk.client_types.RestateClient"),
        ("restate.client_types.RestateScopedClient", "pyrestate.sdk.client_types.RestateScopedClient"),
        ("restate.client.Client", "pyrestate.sdk.client.Client"),
        ("restate.client.ScopedClient", "pyrestate.sdk.client.ScopedClient"),
    ],
)
def test_client_method_signatures(theirs: str, mine: str) -> None:
    def resolve(path: str) -> type:
        mod, _, name = path.rpartition(".")
        return getattr(importlib.import_module(mod), name)  # type: ignore[no-any-return]

    a, b = resolve(theirs), resolve(mine)
    methods_a = {n for n, v in vars(a).items() if callable(v) and not n.startswith("_")}
    methods_b = {n for n, v in vars(b).items() if callable(v) and not n.startswith("_")}
    assert methods_b - methods_a <= CLIENT_EXTRAS
    assert methods_a <= methods_b
    for name in methods_a:
        assert _params(getattr(a, name)) == _params(getattr(b, name)), name


def test_send_handle_and_http_error_constructors() -> None:
    handle = ours.RestateClientSendHandle("inv_1abc", 200)
    assert (handle.invocation_id, handle.status_code) == ("inv_1abc", 200)
    for cls_a, cls_b in [
        (official.HttpError, ours.HttpError),
        (official.RestateClientSendHandle, ours.RestateClientSendHandle),
    ]:
        positional_a = [p for p in _params(cls_a.__init__) if p[1] is not inspect.Parameter.KEYWORD_ONLY]
        positional_b = [p for p in _params(cls_b.__init__) if p[1] is not inspect.Parameter.KEYWORD_ONLY]
        assert positional_a == positional_b
    err_a, err_b = official.HttpError(470, "x", "body"), ours.HttpError(470, "x", "body")
    assert str(err_a) == str(err_b)
    assert (err_b.status_code, err_b.message, err_b.body) == (470, "x", "body")


async def test_create_client_signature() -> None:
    from restate.client import create_client as theirs

    assert _params(theirs) == _params(ours.create_client)
