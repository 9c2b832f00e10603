"""A small synchronous client of the admin API for CLI commands; errors become CliError with an exit code."""

from __future__ import annotations

from typing import Any

import httpx

EXIT_API_ERROR = 1
EXIT_UNREACHABLE = 3
DEFAULT_ADMIN_URL = "http://127.0.0.1:9070"


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_API_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class AdminClient:
    def __init__(self, admin_url: str, timeout: float = 30.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._client = httpx.Client(base_url=self.admin_url, timeout=timeout)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def request(self, method: str, path: str, json_body: Any = None) -> tuple[int, Any]:
        try:
            r = self._client.request(method, path, json=json_body)
        except httpx.ConnectError as e:
            raise CliError(
                f"cannot reach the admin API at {self.admin_url} ({e}). Is `pyrestate server` running?",
                EXIT_UNREACHABLE,
            ) from None
        except httpx.TransportError as e:
            raise CliError(f"request to {self.admin_url}{path} failed: {e}", EXIT_UNREACHABLE) from None
        body: Any = None
        if r.content:
            try:
                body = r.json()
            except ValueError:
                body = r.text
        if r.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else body
            raise CliError(f"{method} {path} failed with {r.status_code}: {message}")
        return r.status_code, body

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]
