"""A small web app in front of Restate: POST /reserve/{product}/{reservation} -> true | false.

A plain ASGI application (serve it with hypercorn). It forwards every request through Restate's ingress
with the reservation id as idempotency key, so a retried reservation gets the first answer again.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx

RESTATE_URL = os.environ.get("RESTATE_URL", "http://localhost:8080")

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    parts = scope["path"].strip("/").split("/")
    if scope["method"] == "POST" and len(parts) == 3 and parts[0] == "reserve":
        status, body = await reserve(parts[1], parts[2])
    elif parts == ["health"]:
        status, body = 200, b"ok"
    else:
        status, body = 404, b"not found"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def reserve(product_id: str, reservation_id: str) -> tuple[int, bytes]:
    async with httpx.AsyncClient(base_url=RESTATE_URL, timeout=60.0) as client:
        r = await client.post(f"/product/{quote(product_id, safe='')}/reserve",
                              headers={"idempotency-key": reservation_id})
    return r.status_code, r.content
