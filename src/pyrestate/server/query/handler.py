"""`POST /query`: the request body and `accept` header in, an HTTP answer out (independent of the web app)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from pyrestate.server.core_api import QuerySnapshot
from pyrestate.server.query.encode import ARROW_STREAM, to_arrow_stream, to_json_rows
from pyrestate.server.query.runner import QueryError, QueryRunner

log = logging.getLogger("pyrestate.query")

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    status: int
    content_type: str
    body: bytes


def _error(status: int, message: str) -> QueryAnswer:
    return QueryAnswer(status, _JSON, json.dumps({"message": message}, separators=(",", ":")).encode())


def wants_json(accept: str | None) -> bool:
    """JSON only when asked for; a missing accept or `*/*` gets Arrow, as Restate does."""
    if not accept:
        return False
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return _JSON in types and ARROW_STREAM not in types


def _missing_query(body: Any) -> QueryAnswer:
    # The web framework reports where the body ended (for the compact body the CLI sends).
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if isinstance(body, dict):
        detail = f"missing field `query` at line 1 column {len(text)}"
    else:
        kind = {list: "sequence", str: "string", bool: "boolean", type(None): "null"}.get(
            type(body), "number"
        )
        detail = f"invalid type: {kind}, expected struct QueryRequest at line 1 column {len(text)}"
    message = f"Failed to deserialize the JSON body into the target type: {detail}"
    return QueryAnswer(422, _TEXT, message.encode())


async def answer_query(
    snapshot: QuerySnapshot | None, runner: QueryRunner, body: Any, accept: str | None
) -> QueryAnswer:
    """`snapshot` None: the engine offers no SQL introspection (501)."""
    if not isinstance(body, dict) or "query" not in body:
        if snapshot is not None:
            snapshot.close()
        return _missing_query(body)
    sql = body["query"]
    if not isinstance(sql, str):
        if snapshot is not None:
            snapshot.close()
        message = (
            "Failed to deserialize the JSON body into the target type: query: invalid type, expected a string"
        )
        return QueryAnswer(422, _TEXT, message.encode())
    if snapshot is None:
        return _error(501, "SQL introspection is not available on this server")
    try:
        table = await runner.run(snapshot, sql)
    except QueryError as e:
        return _error(e.status, e.message)
    except Exception as e:  # a bug in building the tables must not look like a user error
        log.exception("query failed")
        return _error(500, f"Datafusion error: Internal error: {e}")
    if wants_json(accept):
        return QueryAnswer(200, _JSON, to_json_rows(table))
    return QueryAnswer(200, ARROW_STREAM, to_arrow_stream(table))
