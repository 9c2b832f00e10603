"""The admin HTTP API (default 127.0.0.1:9070) as an ASGI app over a ServerCore.

The same routes are served bare and under `/v2`, `/v3`, `/v4`. JSON answers carry `vary: accept-encoding`
(and are gzipped when the client asks); errors are `{"message":…,"restate_code":…}`; request-shape
errors (unparsable body, bad path parameter) are `text/plain`, as Restate's web framework answers them.
This module parses the path and answers the small routes; `deployments`, `services` and `invocations`
route their own resource.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

import pyrestate
from pyrestate.server import core_api, openapi
from pyrestate.server.admin import deployments, invocations, services
from pyrestate.server.admin.deployments import DiscoverFn
from pyrestate.server.admin.http import MAX_ADMIN_BODY, AdminError, PlainError, Request, Response, only
from pyrestate.server.asgi import (
    ClientDisconnected,
    Headers,
    Receive,
    Scope,
    Send,
    TrackedReceive,
    header,
    lifespan,
    raw_path,
    request_headers,
    send_response,
)
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import ServerCore

log = logging.getLogger("pyrestate.admin")

MIN_ADMIN_API_VERSION = 2
MAX_ADMIN_API_VERSION = 4
_FEATURES = (
    "scoped_promise_table_migration",
    "vqueue_obsolete_cleanup",
    "kafka_scope",
    "unique_random_seeds",
    "scoped_state_table_migration",
    "scoped_virtual_objects",
    "invoker_yield",
    "vqueues_migration_skip_completed",
    "vqueues_async_refill",
    "vqueues",
    "preflight_invocation_termination_retention",
    "protocol_v7",
)


class AdminApp:
    """ASGI-3 app. `discover` defaults to the invoker's discovery client (injectable for tests)."""

    def __init__(
        self, core: ServerCore, config: ServerConfig | None = None, *, discover: DiscoverFn | None = None
    ) -> None:
        self.core = core
        self.config = config or ServerConfig()
        self.discover = discover
        self._query_runner: Any = None  # created on the first /query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = request_headers(scope)
        tracked = TrackedReceive(receive)
        try:
            response = await self._dispatch(scope, tracked, headers)
        except AdminError as e:
            response = Response(e.status, {"message": e.message, "restate_code": e.restate_code})
        except PlainError as e:
            plain_headers = [("content-type", "text/plain; charset=utf-8"), ("vary", "accept-encoding")]
            if e.status != 413:
                await tracked.drain(MAX_ADMIN_BODY)
            elif scope.get("http_version") in ("1.0", "1.1"):
                plain_headers.append(("connection", "close"))  # the oversize body stays unread
            await send_response(send, e.status, plain_headers, e.message.encode())
            return
        except ClientDisconnected:
            return
        except core_api.Unavailable as e:  # e.g. storage refuses writes: nothing was changed
            response = Response(503, {"message": str(e) or "unavailable", "restate_code": None})
        except Exception as e:
            log.exception("admin request failed")
            response = Response(500, {"message": f"internal error: {e!r}", "restate_code": None})
        await tracked.drain(MAX_ADMIN_BODY)
        await self._send(send, response, headers)

    async def _send(self, send: Send, response: Response, request_headers_: Headers) -> None:
        out = list(response.headers)
        if isinstance(response.body, bytes):  # already encoded, content-type among the headers
            await send_response(send, response.status, [*out, ("vary", "accept-encoding")], response.body)
            return
        if response.body is None:
            await send_response(send, response.status, out)
            return
        body = json.dumps(response.body, separators=(",", ":"), ensure_ascii=False).encode()
        out.insert(0, ("content-type", "application/json"))
        out.append(("vary", "accept-encoding"))
        accept_encoding = header(request_headers_, "accept-encoding") or ""
        if "gzip" in [p.split(";")[0].strip().lower() for p in accept_encoding.split(",")]:
            body = gzip.compress(body)
            out.append(("content-encoding", "gzip"))
        await send_response(send, response.status, out, body)

    # ------------------------------------------------------------------ routing

    async def _dispatch(self, scope: Scope, receive: Receive, headers: Headers) -> Response:
        method = str(scope["method"]).upper()
        segments = [unquote(s) for s in raw_path(scope).split("/")[1:]]
        if segments and segments[-1] == "" and len(segments) > 1:
            segments = segments[:-1]
        api_version: int | None = None
        first = segments[0] if segments else ""
        # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
        if len(first) >= 2 and first[0] == "v" and first[1:].isascii() and first[1:].isdigit():
            api_version = int(first[1:]) if len(first) <= 10 else MAX_ADMIN_API_VERSION + 1
            if not MIN_ADMIN_API_VERSION <= api_version <= MAX_ADMIN_API_VERSION:
                raise AdminError(
                    400,
                    f"Unsupported admin API version v{api_version}, supported versions are "
                    f"v{MIN_ADMIN_API_VERSION} to v{MAX_ADMIN_API_VERSION}",
                )
            segments = segments[1:]
        query = dict(
            parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)
        )
        req = Request(method, segments[1:], query, headers, receive, api_version)
        resource = _RESOURCES.get(segments[0]) if segments else None
        if resource is not None:
            return await resource(self, req)
        return await self._system(req, segments)

    async def _system(self, req: Request, segments: list[str]) -> Response:
        """The routes outside the three resources: health, metrics, version, OpenAPI, SQL and the console."""
        method = req.method
        match segments:
            case ["health"]:
                return only(method, "GET") or Response(200)
            case ["metrics"]:
                return only(method, "GET") or await self._metrics()
            case ["version"]:
                return only(method, "GET") or Response(200, self._version())
            case ["cluster-health"]:
                # Restate's single-node answer: the embedded metadata store with this node as its member.
                return only(method, "GET") or Response(
                    200, {"cluster_name": "localcluster", "metadata_cluster_health": {"members": [1]}}
                )
            case ["openapi"]:
                return only(method, "GET") or Response(
                    200, openapi.admin_openapi(str(self._version()["version"]))
                )
            case ["query"]:
                if denied := only(method, "POST"):
                    return denied
                return await self._sql_query(req.headers, await req.body_json())
            case ["ui", *rest]:  # the HTML operator console (pyrestate.server.console)
                from pyrestate.server.console import console_origins, serve_console

                origins = console_origins(self.config.admin_bind, self.config.admin_url)
                reply = await serve_console(
                    self.core,
                    self._sql_query,
                    origins,
                    method,
                    rest,
                    req.query,
                    req.receive,
                    req.headers,
                    register=lambda body: deployments.register(self, body, None),
                    ingress_endpoint=self.config.ingress_endpoint,
                )
                return Response(reply.status, reply.body, reply.headers)
            case _:
                return Response(404)

    # ------------------------------------------------------------------ handlers

    async def _metrics(self) -> Response:
        from pyrestate.server import metrics

        if metrics.gauges.invocations_stale():
            sql = "SELECT target_service_name, status, count(*) AS n FROM sys_invocation GROUP BY 1, 2"
            answer = await self._sql_query([("accept", "application/json")], {"query": sql})
            if answer.status == 200 and isinstance(answer.body, bytes):
                rows = json.loads(answer.body)["rows"]
                metrics.gauges.set_invocations(
                    (r["target_service_name"], r["status"], int(r["n"])) for r in rows
                )
        return Response(200, metrics.exposition(), [("content-type", metrics.CONTENT_TYPE)])

    def _runner(self) -> Any:
        from pyrestate.server.query import QueryLimits, QueryRunner

        if self._query_runner is None:
            concurrency = QueryLimits().concurrency
            per_query = max(self.config.query_memory_bytes // concurrency, 16 * 1024 * 1024)
            self._query_runner = QueryRunner(QueryLimits(memory_bytes=per_query, concurrency=concurrency))
        return self._query_runner

    def prewarm_queries(self) -> None:
        """Start a query worker now (in the background): loading DataFusion costs the first query ~0.5 s,
        which a user's first `restate invocations list` would otherwise wait for."""
        threading.Thread(target=self._runner().prewarm, name="query-prewarm", daemon=True).start()

    async def _sql_query(self, headers: Headers, body: Any) -> Response:
        from pyrestate.server.query import answer_query

        runner = self._runner()
        make_snapshot = getattr(self.core, "query_snapshot", None)
        snapshot = make_snapshot() if make_snapshot is not None and isinstance(body, dict) else None
        answer = await answer_query(snapshot, runner, body, header(headers, "accept"))
        return Response(answer.status, answer.body, [("content-type", answer.content_type)])

    def _version(self) -> dict[str, Any]:
        return {
            "version": pyrestate.__version__ if hasattr(pyrestate, "__version__") else _package_version(),
            "min_admin_api_version": MIN_ADMIN_API_VERSION,
            "max_admin_api_version": MAX_ADMIN_API_VERSION,
            "ingress_endpoint": self.config.ingress_endpoint,
            "features": {
                f: f == "protocol_v7" and self.config.experimental_enable_protocol_v7 for f in _FEATURES
            },
        }


_RESOURCES: dict[str, Callable[[AdminApp, Request], Awaitable[Response]]] = {
    "deployments": deployments.route,
    "services": services.route,
    "invocations": invocations.route,
}


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyrestate")
    except PackageNotFoundError:
        return "0.0.0"
