"""A fake payment provider, Stripe-like in shape: POST /payment_intents with an `Idempotency-Key` header.

Cards are answered at once (`succeeded`, or `failed` above CARD_LIMIT); other methods (`bank_transfer`,
`ideal`, ...) answer `processing` and report the outcome later, WEBHOOK_DELAY_MS (default 3000) after the
request, by posting a `payment_intent.succeeded` event to the webhook URL: PAYMENT_WEBHOOK_URL, by default
`$RESTATE_URL/checkout/processWebhook/send` (Restate's ingress accepts it as soon as it is stored).

A request repeated with a known idempotency key gets the payment intent back without a new charge. Every
charge, repeat and webhook is recorded (examples/effects.py). State is in memory.

python -m examples.payment_signals.provider --port 9081   # what PAYMENT_PROVIDER_URL then points at
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from examples.effects import record

CARD_LIMIT = 1000

Intent = dict[str, Any]  # {"id", "amount", "method", "status", "metadata"}

_intents: dict[str, Intent] = {}  # by idempotency key
_lock = threading.Lock()


def create_intent(key: str, amount: int, method: str, metadata: dict[str, Any]) -> Intent:
    with _lock:
        known = _intents.get(key)
        if known is not None:
            record(f"provider: repeated request for {known['id']} (key {key}), no new charge")
            return dict(known)
        intent = {"id": f"pi_{uuid.uuid4().hex[:12]}", "amount": amount, "method": method,
                  "metadata": metadata}
        what = f"{intent['id']} for order {metadata.get('orderId')}: {amount} by {method}"
        if method == "card" and amount > CARD_LIMIT:
            intent["status"] = "failed"
            record(f"provider: declined {what}")
        else:
            intent["status"] = "succeeded" if method == "card" else "processing"
            record(f"provider: charged {what}")
        _intents[key] = intent
    if intent["status"] == "processing":
        # The bank answers later: the webhook comes from another thread, long after this response.
        threading.Thread(target=_settle_later, args=(key,), daemon=True).start()
    return dict(intent)


def _settle_later(key: str) -> None:
    time.sleep(int(os.environ.get("WEBHOOK_DELAY_MS", "3000")) / 1000)
    with _lock:
        _intents[key]["status"] = "succeeded"
        intent = dict(_intents[key])
    ingress = os.environ.get("RESTATE_URL", "http://127.0.0.1:8080")
    url = os.environ.get("PAYMENT_WEBHOOK_URL", f"{ingress}/checkout/processWebhook/send")
    event_id = f"evt_{intent['id']}"
    event = {"id": event_id, "type": "payment_intent.succeeded", "data": {"object": intent}}
    # Delivered until accepted, as providers do; the event id as idempotency key makes a repeat harmless.
    while True:
        try:
            r = httpx.post(url, json=event, headers={"idempotency-key": event_id}, timeout=10)
            if r.is_success:
                record(f"provider: webhook delivered for {intent['id']}")
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(200, {"ok": True} if self.path == "/health" else {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/payment_intents":
            self._answer(404, {"error": "not found"})
            return
        key = self.headers.get("idempotency-key")
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        if not key:
            self._answer(400, {"error": "an Idempotency-Key header is required"})
            return
        intent = create_intent(key, int(body["amount"]), str(body["method"]), body.get("metadata", {}))
        self._answer(200, intent)

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # the recorded lines say enough
        pass


def start_in_background() -> str:
    """Serve on a free loopback port from a daemon thread (the service's fallback); returns the URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9081)
    args = parser.parse_args()
    print(f"fake payment provider on http://127.0.0.1:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        ThreadingHTTPServer(("127.0.0.1", args.port), _Handler).serve_forever()


if __name__ == "__main__":
    main()
