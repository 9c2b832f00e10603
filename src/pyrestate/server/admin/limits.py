"""`/limits/rules`: the rule book of concurrency limits (flow control), as restate-server 1.7 serves it:
`PUT /limits/rules` upserts a batch, `POST /limits/rules/bulk-delete` deletes one; both atomic, with
optimistic preconditions (409). The rules are read with SQL (`sys_rules`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyrestate.server.admin.http import AdminError, PlainError, Request, Response, only
from pyrestate.server.flow_limits import (
    Delete,
    PatternError,
    Precondition,
    PreconditionFailed,
    Upsert,
    parse_pattern,
)

if TYPE_CHECKING:
    from pyrestate.server.admin.app import AdminApp

_U32_MAX = 2**32 - 1


async def route(app: AdminApp, req: Request) -> Response:
    match req.path:
        case ["rules"]:
            if denied := only(req.method, "PUT"):
                return denied
            entries = _upserts(await req.body_json())
            try:
                rules = await app.core.upsert_rules(entries)
            except PreconditionFailed as e:
                raise AdminError(409, str(e)) from None
            return Response(200, [r.to_json() for r in rules])
        case ["rules", "bulk-delete"]:
            if denied := only(req.method, "POST"):
                return denied
            deletes = _deletes(await req.body_json())
            try:
                removed = await app.core.delete_rules(deletes)
            except PreconditionFailed as e:
                raise AdminError(409, str(e)) from None
            return Response(200, removed)
        case _:
            return Response(404)


def _unprocessable(where: str, why: str) -> PlainError:
    prefix = f"{where}: " if where else ""
    return PlainError(422, f"Failed to deserialize the JSON body into the target type: {prefix}{why}")


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, int | float):
        return f"integer `{v}`" if isinstance(v, int) else f"floating point `{v}`"
    if isinstance(v, str):
        return f'string "{v}"'
    return "sequence" if isinstance(v, list) else "map"


def _array(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise _unprocessable("", f"invalid type: {_json_type(body)}, expected a sequence")
    return body


def _object(where: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _unprocessable(where, f"invalid type: {_json_type(v)}, expected struct")
    return v


def _pattern(where: str, entry: dict[str, Any]) -> str:
    if "pattern" not in entry:
        raise _unprocessable(where, "missing field `pattern`")
    text = entry["pattern"]
    if not isinstance(text, str):
        raise _unprocessable(f"{where}.pattern", f"invalid type: {_json_type(text)}, expected a string")
    try:
        return parse_pattern(text)
    except PatternError as e:
        raise _unprocessable(f"{where}.pattern", str(e)) from None


def _version(where: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _U32_MAX:
        raise _unprocessable(where, f"invalid value: {_json_type(v)}, expected u32")
    return v


def _upserts(body: Any) -> list[Upsert]:
    out = []
    for i, raw in enumerate(_array(body)):
        where = f"[{i}]"
        entry = _object(where, raw)
        pattern = _pattern(where, entry)
        concurrency: int | None = None
        limits = entry.get("limits")
        if limits is not None:
            limits = _object(f"{where}.limits", limits)
            c = limits.get("concurrency")
            if c is not None:
                if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= _U32_MAX:
                    raise _unprocessable(
                        f"{where}.limits.concurrency",
                        f"invalid value: {_json_type(c)}, expected a nonzero u32",
                    )
                concurrency = c
        description = entry.get("description")
        if description is not None and not isinstance(description, str):
            raise _unprocessable(
                f"{where}.description", f"invalid type: {_json_type(description)}, expected a string"
            )
        disabled = entry.get("disabled", False)
        if not isinstance(disabled, bool):
            raise _unprocessable(
                f"{where}.disabled", f"invalid type: {_json_type(disabled)}, expected a boolean"
            )
        out.append(Upsert(pattern, concurrency, description, disabled, _precondition(where, entry)))
    return out


def _precondition(where: str, entry: dict[str, Any]) -> Precondition:
    raw = entry.get("precondition")
    if raw is None:
        return ("none", None)
    p = _object(f"{where}.precondition", raw)
    kind = p.get("type")
    if kind == "none":
        return ("none", None)
    if kind == "does_not_exist":
        return ("does_not_exist", None)
    if kind == "matches":
        if "version" not in p:
            raise _unprocessable(f"{where}.precondition", "missing field `version`")
        return ("matches", _version(f"{where}.precondition.version", p["version"]))
    if kind is None:
        raise _unprocessable(f"{where}.precondition", "missing field `type`")
    raise _unprocessable(
        f"{where}.precondition.type",
        f"unknown variant `{kind}`, expected one of `none`, `matches`, `does_not_exist`",
    )


def _deletes(body: Any) -> list[Delete]:
    out = []
    for i, raw in enumerate(_array(body)):
        where = f"[{i}]"
        entry = _object(where, raw)
        pattern = _pattern(where, entry)
        expected = entry.get("expected_version")
        out.append(
            Delete(pattern, None if expected is None else _version(f"{where}.expected_version", expected))
        )
    return out
