"""Stored values for people and scripts: the decoding shared by the CLI and the web console.

It sits beside `server.query` rather than in it because importing that package loads DataFusion, which the
CLI must not pay for on every command. `entry_json` (a `sys_journal` column) holds byte payloads as arrays of
integers, as restate-server shows them.
"""

from __future__ import annotations

import base64
import json
from typing import Any

_VALUE_KEYS = ("payload", "value", "Success")


def payload_json(data: bytes) -> Any:
    """A stored value for scripts: the JSON value when it is JSON, else the text, else {"base64": …}."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}
    try:
        return json.loads(text)
    except ValueError:
        return text


def payload_text(data: bytes) -> str:
    """A stored value for people: compact JSON when it is JSON, else the text, else base64."""
    value = payload_json(data)
    if isinstance(value, dict) and set(value) == {"base64"}:
        return "base64:" + str(value["base64"])
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def payload_pretty(data: bytes) -> tuple[str, str]:
    """(kind, text) for a page: ("json", indented JSON), ("text", the text) or ("base64", base64)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(data).decode("ascii")
    try:
        return "json", json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return "text", text


def entry_payload(entry_json: object) -> bytes | dict[str, Any] | None:
    """The value an entry carries (input, output, state value, result) as bytes, or a failure's fields
    ({"code", "message"}), or None."""
    if not isinstance(entry_json, str):
        return None
    try:
        node: Any = json.loads(entry_json)
    except ValueError:
        return None
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            failure = node.get("Failure")
            if isinstance(failure, dict) and "code" in failure:
                return {"code": failure["code"], "message": failure.get("message", "")}
            for k in _VALUE_KEYS:
                v = node.get(k)
                if isinstance(v, list) and all(isinstance(b, int) and 0 <= b < 256 for b in v):
                    return bytes(v)
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return None


def entry_value(entry_json: object) -> str | None:
    """An entry's value on one line: decoded payload, or `failure [code] message`."""
    found = entry_payload(entry_json)
    if isinstance(found, dict):
        return f"failure [{found['code']}] {found['message']}"
    return None if found is None else payload_text(found)


def entry_value_json(entry_json: object) -> Any:
    """An entry's value for `--json`: the JSON value (or text, or {"base64": …}), or {"failure": {…}}."""
    found = entry_payload(entry_json)
    if isinstance(found, dict):
        return {"failure": found}
    return None if found is None else payload_json(found)


def entry_state_key(entry_json: object) -> str | None:
    """The state key a GetState/SetState/ClearState entry names, if any."""
    if not isinstance(entry_json, str):
        return None
    try:
        parsed = json.loads(entry_json)
    except ValueError:
        return None
    stack: list[Any] = [parsed]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            key = node.get("key")
            if isinstance(key, str):
                return key
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return None
