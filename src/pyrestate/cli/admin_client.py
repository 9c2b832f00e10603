"""A small synchronous client of the admin API for CLI commands; errors become CliError with an exit code.

Exit codes are part of the CLI's contract with scripts:
0 ok, 1 error (the server refused or failed), 2 usage, 3 server unreachable, 4 not found.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
DEFAULT_ADMIN_URL = "http://127.0.0.1:9070"


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_API_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class QueryUnsupported(CliError):
    """The server has no SQL introspection (`POST /query` answers 501 or 404)."""


def seg(value: str) -> str:
    """One URL path segment (service names and keys may hold any character)."""
    return quote(value, safe="")


class AdminClient:
    def __init__(self, admin_url: str, timeout: float = 30.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._client = httpx.Client(base_url=self.admin_url, timeout=timeout)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, json_body: Any = None, **kw: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, json=json_body, **kw)
        except httpx.ConnectError:
            raise CliError(
                f"cannot reach the admin API at {self.admin_url}: connection refused. "
                "Is `pyrestate server` running? (set --admin-url or PYRESTATE_ADMIN_URL)",
                EXIT_UNREACHABLE,
            ) from None
        except httpx.TimeoutException:
            raise CliError(
                f"the admin API at {self.admin_url} did not answer in time", EXIT_UNREACHABLE
            ) from None
        except httpx.TransportError as e:
            raise CliError(f"request to {self.admin_url}{path} failed: {e}", EXIT_UNREACHABLE) from None

    def request(self, method: str, path: str, json_body: Any = None, **kw: Any) -> tuple[int, Any]:
        r = self._send(method, path, json_body, **kw)
        body: Any = None
        if r.content:
            try:
                body = r.json()
            except ValueError:
                body = r.text
        if r.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else (body or r.reason_phrase)
            code = EXIT_NOT_FOUND if r.status_code == 404 else EXIT_API_ERROR
            raise CliError(f"{message} (HTTP {r.status_code} from {method} {path})", code)
        return r.status_code, body

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a SQL query over the introspection tables, as JSON objects (null columns omitted)."""
        r = self._send("POST", "/v4/query", {"query": sql}, headers={"accept": "application/json"})
        if r.status_code in (404, 405, 501):
            raise QueryUnsupported(
                f"this server does not support SQL introspection yet (POST /query answered "
                f"{r.status_code}); commands that read invocations, journals and state need it",
                EXIT_API_ERROR,
            )
        if r.status_code >= 400:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            raise CliError(f"query failed (HTTP {r.status_code}): {message}")
        rows: list[dict[str, Any]] = r.json()["rows"]
        return rows
