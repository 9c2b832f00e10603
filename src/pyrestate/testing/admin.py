"""Admin API helpers (deployments, invocation control, SQL introspection) over httpx."""

from __future__ import annotations

import time
from typing import Any

import httpx


class AdminError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        request = response.request
        super().__init__(f"{request.method} {request.url} -> {response.status_code}: {response.text}")
        self.response = response


def register_deployment(
    admin_url: str,
    uri: str,
    use_http_11: bool = False,
    force: bool = True,
    timeout: float = 30.0,
    additional_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST /deployments, retried while the server or the endpoint is still coming up."""
    body: dict[str, Any] = {"uri": uri, "use_http_11": use_http_11, "force": force}
    if additional_headers:
        body["additional_headers"] = additional_headers
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10.0) as client:
        while True:
            try:
                r = client.post(f"{admin_url}/deployments", json=body)
                if r.status_code in (200, 201):
                    result: dict[str, Any] = r.json()
                    return result
                err: Exception = AdminError(r)
            except httpx.TransportError as e:
                err = e
            if time.monotonic() > deadline:
                raise err
            time.sleep(0.2)


class Admin:
    """Thin admin client; methods return the raw response where the status is the interesting part."""

    def __init__(self, admin_url: str, timeout: float = 10.0) -> None:
        self.url = admin_url
        self.client = httpx.Client(base_url=admin_url, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def register(self, uri: str, use_http_11: bool = False, force: bool = True) -> dict[str, Any]:
        return register_deployment(self.url, uri, use_http_11=use_http_11, force=force)

    def cancel(self, invocation_id: str) -> httpx.Response:
        return self.client.patch(f"/invocations/{invocation_id}/cancel")

    def kill(self, invocation_id: str) -> httpx.Response:
        return self.client.patch(f"/invocations/{invocation_id}/kill")

    def purge(self, invocation_id: str) -> httpx.Response:
        return self.client.patch(f"/invocations/{invocation_id}/purge")

    def query(self, sql: str) -> list[dict[str, Any]]:
        r = self.client.post("/query", json={"query": sql}, headers={"accept": "application/json"})
        if r.status_code != 200:
            raise AdminError(r)
        rows: list[dict[str, Any]] = r.json()["rows"]
        return rows

    def service(self, name: str) -> dict[str, Any]:
        r = self.client.get(f"/services/{name}")
        if r.status_code != 200:
            raise AdminError(r)
        result: dict[str, Any] = r.json()
        return result

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
