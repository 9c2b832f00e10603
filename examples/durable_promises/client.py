"""A durable promise from any process: `DurablePromise(name).get()` waits, `.resolve(v)` completes.

    python -m examples.durable_promises.client await <promise-name>
    python -m examples.durable_promises.client resolve <promise-name> '<json value>'
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any

import httpx

RESTATE_URL = os.environ.get("RESTATE_URL", "http://localhost:8080")


class PromiseRejected(Exception):
    pass


class DurablePromise:
    def __init__(self, name: str, restate_url: str = RESTATE_URL) -> None:
        self.name = name
        self.url = restate_url

    def _call(self, handler: str, retry_key: str | None = None, **fields: Any) -> Any:
        headers = {"idempotency-key": retry_key} if retry_key else {}
        r = httpx.post(f"{self.url}/durablePromiseServer/{handler}", headers=headers, timeout=None,
                       json={"request": {"promiseName": self.name, **fields}})
        r.raise_for_status()
        return r.json() if r.content else None

    @staticmethod
    def _unwrap(completion: dict[str, Any]) -> Any:
        if "error" in completion:
            raise PromiseRejected(completion["error"])
        return completion["value"]

    def peek(self) -> Any:
        """The value if the promise is completed, else None (never blocks)."""
        completion = self._call("peek")
        return None if completion is None else self._unwrap(completion)

    def get(self) -> Any:
        # With an idempotency key a dropped connection can re-attach to the same wait.
        return self._unwrap(self._call("await", retry_key=str(uuid.uuid4())))

    def resolve(self, value: Any) -> Any:
        """Complete with `value`; returns the promise's actual value (an earlier completion wins)."""
        return self._unwrap(self._call("resolve", value=value))

    def reject(self, message: str) -> Any:
        return self._unwrap(self._call("reject", errorMessage=message))


if __name__ == "__main__":
    command, name = sys.argv[1], sys.argv[2]
    promise = DurablePromise(name)
    try:
        if command == "await":
            print(json.dumps(promise.get()), flush=True)
        elif command == "resolve":
            print(json.dumps(promise.resolve(json.loads(sys.argv[3]))), flush=True)
        else:
            print(json.dumps(promise.peek()), flush=True)
    except PromiseRejected as e:
        print(f"rejected: {e}", flush=True)
