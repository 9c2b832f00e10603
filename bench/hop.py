"""CPU cost of the routing hop between workers (`pyrestate server --workers N`), without HTTP or storage.

    .venv/bin/python -m bench.hop [--calls 20000] [--conc 64]

Two processes, each a `cluster.node.Node` as a worker runs it: the first forwards `--calls` ingress calls
(an `IngressInvocation` with a 17-byte body, `--conc` at a time) to the second, which answers each with an
`InvocationResult`. Prints calls/s and the CPU microseconds per call on each side (both included, from
/proc), i.e. what a forwarded request costs over one handled where it arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procstat import tree_usage
from pyrestate.server.cluster.layout import Layout
from pyrestate.server.cluster.node import Node, socket_path
from pyrestate.server.core_api import IngressInvocation, InvocationResult, InvocationTarget, Success

LAYOUT = Layout(partitions=2, workers=2)


def _node(me: int, sockdir: Path, handler: Any) -> Node:
    return Node(
        me, LAYOUT, sockdir, handle_request=handler, on_deliver=lambda *a: None, on_acked=lambda k: None
    )


async def _serve(sockdir: Path) -> None:
    async def handle(method: str, args: tuple[Any, ...]) -> Any:
        return InvocationResult("inv_1abc", Success(b'{"hello":"world"}', "application/json"))

    node = _node(1, sockdir, handle)
    await node.start()
    await asyncio.Event().wait()


async def _drive(sockdir: Path, calls: int, conc: int, server_pid: int) -> None:
    async def nothing(method: str, args: tuple[Any, ...]) -> Any:
        return None

    node = _node(0, sockdir, nothing)
    await node.start()
    while not socket_path(sockdir, 1).exists():
        await asyncio.sleep(0.05)
    inv = IngressInvocation(
        InvocationTarget("Noop", "call"),
        b'{"hello":"world"}',
        (("content-type", "application/json"),),
        "01JABCDEFGHJKMNPQRSTVWXYZ0",
    )
    await node.call(1, "call", inv)  # connected and warm
    left = calls

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await node.call(1, "call", inv)

    cpu0 = time.process_time()
    srv0, _ = tree_usage(server_pid)
    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(conc)))
    wall = time.monotonic() - t0
    sender = time.process_time() - cpu0
    receiver = tree_usage(server_pid)[0] - srv0
    print(
        f"{calls} forwarded calls, {conc} at a time: {calls / wall:.0f} calls/s; CPU per call: "
        f"sender {1e6 * sender / calls:.0f} us, owner {1e6 * receiver / calls:.0f} us, "
        f"together {1e6 * (sender + receiver) / calls:.0f} us"
    )
    await node.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    if a.serve is not None:
        run(_serve(Path(a.serve)))
        return
    with tempfile.TemporaryDirectory(prefix="hop-") as tmp:
        child = subprocess.Popen([sys.executable, "-m", "bench.hop", "--serve", tmp], cwd=os.getcwd())
        try:
            run(_drive(Path(tmp), a.calls, a.conc, child.pid))
        finally:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
