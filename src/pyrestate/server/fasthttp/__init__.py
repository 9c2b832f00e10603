"""A lean HTTP/1.1 front for the ingress and admin APIs: plain keep-alive requests with a `content-length`
body (what HTTP clients send to invoke handlers) are parsed by llhttp (`httptools`), handed to the ASGI app
directly, and the response leaves in one write. The HTTP/2 preface, an `upgrade` (h2c), `expect`, chunked
or large bodies, HEAD, HTTP/1.0 and absolute-form targets hand the connection over to hypercorn with the
request's bytes unconsumed, so every such case behaves exactly as under hypercorn.

Anything llhttp refuses in its strict mode (bare LF or CR line ends, obs-fold, duplicate or malformed
`content-length`, `transfer-encoding` with `content-length` or not ending in `chunked`, bytes that are not
HTTP such as a TLS hello) is answered 400 and the connection closed, as hyper does. A connection is closed
once its peer has sent EOF and every complete request before it is answered, after `header_timeout` without
a complete request head, after `idle_timeout` between requests, and beyond `max_connections` a connection is
refused with 503.

Per request this saves hypercorn's per-connection task group, h11 state machine and two writes, which were
a fifth of the server's CPU time per invocation.

The package: `server.py` listens, refuses beyond the limit and hands connections over to hypercorn;
`connection.py` is one connection's life (reading, deadlines, answering, closing); `http1.py` is the
HTTP/1.1 wire format around llhttp (what goes to hypercorn, the ASGI scope, status lines).
"""

from pyrestate.server.fasthttp.http1 import DEFAULT_MAX_HEAD
from pyrestate.server.fasthttp.server import FastHTTPServer

__all__ = ["DEFAULT_MAX_HEAD", "FastHTTPServer"]
