"""`pyrestate dev`: a server, an SDK app and its registration in one command, stopped together by Ctrl-C."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from pyrestate.cli.admin_client import EXIT_API_ERROR, CliError
from pyrestate.cli.render import console, err_console
from pyrestate.cli.serve import load_app
from pyrestate.server.storage.datadir import holder_of


@dataclass
class DevOptions:
    app_ref: str
    data_dir: Path | None  # None: a temporary directory removed on exit
    ingress_port: int
    admin_port: int
    app_port: int
    startup_timeout: float


class _Child:
    def __init__(
        self,
        name: str,
        argv: list[str],
        stop_signal: signal.Signals,
        log: IO[bytes] | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.log = log
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else None,
            stderr=subprocess.STDOUT if log is not None else None,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
            env=env,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def check_ports(ports: list[tuple[str, int]]) -> None:
    """Every port must be free before anything starts: a busy one would mean talking to someone else's
    server (or app), and failing late with `Address already in use`."""
    for name, port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As the servers bind: a port left in TIME_WAIT by a previous run is free, a listener is not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                why = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be used ({e.strerror})"
                flag = f"--{name}-port"
                raise CliError(
                    f"port {port} ({name}) {why} on 127.0.0.1: stop what listens there or pass {flag}"
                ) from None


def _wait_answers(url: str, child: _Child, deadline: float, log_path: Path | None) -> None:
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not child.alive():
                tail = _tail(log_path) if log_path else "(see its output above)"
                raise CliError(
                    f"{child.name} exited with code {child.proc.returncode} while starting\n{tail}"
                )
            try:
                client.get(url)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if child.alive():  # the answer came from our child, not from a process that took the port
                return
    raise CliError(f"{child.name} did not answer at {url} in time")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_dev(opts: DevOptions) -> int:
    check_ports([("ingress", opts.ingress_port), ("admin", opts.admin_port), ("app", opts.app_port)])
    # Imported here first: a bad module name or an app that fails to import is one line, before any start.
    load_app(opts.app_ref)
    curl_examples = _curl_examples(sys.modules[opts.app_ref.split(":", 1)[0]])
    tmp = None
    if opts.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="pyrestate-dev-"))
        data_dir = tmp
    else:
        data_dir = opts.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    # The server would refuse a locked data dir too; saying it here keeps the other server's log clean.
    holder = holder_of(data_dir / "data")
    if holder is not None:
        raise CliError(f"the data dir {data_dir} is in use by another pyrestate server ({holder})")
    server_log_path = data_dir / "server.log"
    ingress = f"http://127.0.0.1:{opts.ingress_port}"
    admin = f"http://127.0.0.1:{opts.admin_port}"
    app_url = f"http://127.0.0.1:{opts.app_port}"
    python = sys.executable
    children: list[_Child] = []
    stop_requested = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    server_log = server_log_path.open("ab")
    try:
        with console.status("Starting pyrestate server…"):
            server = _Child(
                "pyrestate server",
                [
                    python,
                    "-m",
                    "pyrestate.cli.main",
                    "server",
                    "--data-dir",
                    str(data_dir / "data"),
                    "--ingress-bind",
                    f"127.0.0.1:{opts.ingress_port}",
                    "--admin-bind",
                    f"127.0.0.1:{opts.admin_port}",
                ],
                signal.SIGTERM,
                server_log,
            )
            children.append(server)
            deadline = time.monotonic() + opts.startup_timeout
            _wait_answers(f"{admin}/health", server, deadline, server_log_path)
        with console.status(f"Serving {opts.app_ref} on {app_url}…"):
            # The official SDK's SIGTERM hook keeps hypercorn running: SIGINT stops it.
            app = _Child(
                f"app {opts.app_ref}",
                [
                    python,
                    "-m",
                    "pyrestate.cli.main",
                    "serve",
                    opts.app_ref,
                    "--bind",
                    f"127.0.0.1:{opts.app_port}",
                    "--log-level",
                    "warning",  # its start and stop lines: `dev` prints its own
                ],
                signal.SIGINT,
                None,
                # Apps that call back into Restate (webhooks, clients) find the ingress here.
                env={**os.environ, "RESTATE_URL": ingress},
            )
            children.append(app)
            _wait_answers(f"{app_url}/health", app, deadline, None)
        with console.status("Registering the deployment…"):
            services = _register(admin, app_url)
        _welcome(ingress, admin, app_url, services, server_log_path, curl_examples)
        while not stop_requested:
            for child in children:
                if not child.alive():
                    err_console.print(
                        f"[bold red]error:[/] {child.name} exited with code {child.proc.returncode}",
                        highlight=False,
                    )
                    return EXIT_API_ERROR
            time.sleep(0.2)
        console.print(_stop_line(admin, ephemeral=tmp is not None), highlight=False)
        return 0
    finally:
        # The server first: it stops sending work and counts what is in flight while the app still holds
        # it; the app's open streams end with the server, and nothing reaches it any more.
        for child in children:
            child.stop()
        server_log.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _stop_line(admin: str, *, ephemeral: bool) -> str:
    """The one line Ctrl-C prints: what was unfinished, and whether it comes back."""
    try:
        r = httpx.post(
            f"{admin}/query",
            json={"query": "SELECT count(*) AS n FROM sys_invocation WHERE status != 'completed'"},
            headers={"accept": "application/json"},
            timeout=2.0,
        )
        n = int(r.json()["rows"][0]["n"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        return "Stopping."
    if not n:
        return "Stopping: no invocation in flight."
    if ephemeral:
        return f"Stopping: {n} unfinished invocation(s) are dropped with the temporary data directory."
    return f"Stopping: {n} unfinished invocation(s) resume when `pyrestate dev` runs again on this data dir."


def _register(admin: str, app_url: str) -> list[dict[str, Any]]:
    body = {"uri": app_url, "force": True}
    with httpx.Client(timeout=30.0) as client:
        r = client.post(f"{admin}/v4/deployments", json=body)
    if r.status_code not in (200, 201):
        raise CliError(f"registering {app_url} failed (HTTP {r.status_code}): {r.text}")
    services: list[dict[str, Any]] = r.json().get("services", [])
    return services


def _curl_examples(module: object) -> list[tuple[str, str]]:
    """The app module's optional CURL_EXAMPLES: (title, shell command) pairs with `{ingress}`/`{app}`."""
    examples = getattr(module, "CURL_EXAMPLES", None) or []
    try:
        return [(str(title), str(command)) for title, command in examples]
    except (TypeError, ValueError):
        return []


def _welcome(
    ingress: str,
    admin: str,
    app_url: str,
    services: list[dict[str, Any]],
    server_log: Path,
    curl_examples: list[tuple[str, str]],
) -> None:
    console.print(
        f"[bold green]Ready.[/] Ingress [bold]{ingress}[/]  admin {admin}  app {app_url}", highlight=False
    )
    console.print(f"Server log: {server_log}", highlight=False)
    if curl_examples:
        # Many services: one line each, then the commands the app itself suggests.
        for svc in services:
            handlers = ", ".join(h["name"] for h in svc.get("handlers", []))
            console.print(f"  [bold]{svc['name']}[/] ({svc.get('ty', '')}): {handlers}", highlight=False)
        console.print("[bold]Try:[/]", highlight=False)
        for title, command in curl_examples:
            console.print(f"  [dim]# {title}[/]", highlight=False)
            line = command.replace("{ingress}", ingress).replace("{app}", app_url)
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
    else:
        for svc in services:
            for h in svc.get("handlers", []):
                line = curl_hint(ingress, svc, h)
                console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
    console.print(
        f"Inspect with `pyrestate invocations list --admin-url {admin}`. Ctrl-C stops everything.",
        highlight=False,
    )


EXAMPLE_KEY = "my-key"


def curl_hint(ingress: str, service: dict[str, Any], handler: dict[str, Any]) -> str:
    """A command that runs as printed: a concrete key for objects and workflows, a JSON body that fits
    the handler's input schema (or `{}` when it declares none), quoted for POSIX shells."""
    name = service["name"]
    keyed = service.get("ty") in ("VirtualObject", "Workflow")
    path = f"{name}/{EXAMPLE_KEY}/{handler['name']}" if keyed else f"{name}/{handler['name']}"
    cmd = f"curl {shlex.quote(f'{ingress}/{path}')}"
    if handler.get("input_description") == "none":
        return cmd
    body = json.dumps(example_value(handler.get("input_json_schema")), separators=(",", ":"))
    return f"{cmd} --json {shlex.quote(body)}"


def example_value(schema: object, depth: int = 0, root: object = None) -> object:
    """A small value matching a JSON schema, for hints (defaults and examples win when given)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 6:
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: object = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return example_value(target, depth + 1, root)
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            typed = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return example_value((typed or options)[0], depth + 1, root)
    ty = schema.get("type")
    if isinstance(ty, list):
        ty = next((t for t in ty if t != "null"), None)
    match ty:
        case "string":
            return "hello"
        case "integer":
            return 1
        case "number":
            return 1.5
        case "boolean":
            return True
        case "null":
            return None
        case "array":
            return [example_value(schema.get("items"), depth + 1, root)] if schema.get("items") else []
        case "object" | None:
            props = schema.get("properties")
            if not isinstance(props, dict):
                return {}
            required = schema.get("required")
            names = required if isinstance(required, list) and required else list(props)
            return {n: example_value(props.get(n), depth + 1, root) for n in names if n in props}
    return {}
