"""HTTP client used by the invoker to talk to service deployments.

HTTP/2 (cleartext with prior knowledge, or TLS with ALPN) is driven by the `h2` state machine over asyncio
streams, because Restate's bidi mode needs a client that keeps writing the request body while it reads the
response; generic clients send the whole body first. One connection per deployment carries many streams;
a new one is opened when the current one is closing (GOAWAY), closed, or full.

HTTP/1.1 (`use_http_11`) is plain request/response over `h11`: the request body is collected until
`end_request()`, sent with chunked transfer encoding, then the response body is streamed.

All h2 state changes happen synchronously between awaits, so cancelling any await (a caller's timeout)
never leaves the shared connection half-updated; at worst the one stream is left incomplete and the caller
resets it with `aclose()`.
"""

from pyrestate.server.invoker.transport.client import DeploymentClient
from pyrestate.server.invoker.transport.stream import InvocationStream, TransportError

__all__ = ["DeploymentClient", "InvocationStream", "TransportError"]
