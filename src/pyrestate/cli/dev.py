"""`pyrestate dev`: a server, an SDK app and its registration in one command, stopped together by Ctrl-C."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from pyrestate.cli.admin_client import EXIT_API_ERROR, EXIT_USAGE, CliError
from pyrestate.cli.render import console, err_console
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
                return
            except httpx.TransportError:
                time.sleep(0.1)
    raise CliError(f"{child.name} did not answer at {url} in time")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_dev(opts: DevOptions) -> int:
    if ":" not in opts.app_ref:
        raise CliError("expected MODULE:APP, e.g. `pyrestate dev app:app`", EXIT_USAGE)
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
        _welcome(ingress, admin, app_url, services, server_log_path, _curl_examples(opts.app_ref))
        while not stop_requested:
            for child in children:
                if not child.alive():
                    err_console.print(
                        f"[bold red]error:[/] {child.name} exited with code {child.proc.returncode}",
                        highlight=False,
                    )
                    return EXIT_API_ERROR
            time.sleep(0.2)
        console.print("Stopping…")
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        server_log.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _register(admin: str, app_url: str) -> list[dict[str, Any]]:
    body = {"uri": app_url, "force": True}
    with httpx.Client(timeout=30.0) as client:
        r = client.post(f"{admin}/v4/deployments", json=body)
    if r.status_code not in (200, 201):
        raise CliError(f"registering {app_url} failed (HTTP {r.status_code}): {r.text}")
    services: list[dict[str, Any]] = r.json().get("services", [])
    return services


def _curl_examples(app_ref: str) -> list[tuple[str, str]]:
    """The app module's optional CURL_EXAMPLES: (title, shell command) pairs with `{ingress}`/`{app}`.

    Best effort: the app already runs in its own process, so a module that fails to import here only
    costs the hints.
    """
    module_name = app_ref.split(":", 1)[0]
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
        examples = getattr(module, "CURL_EXAMPLES", [])
        return [(str(title), str(command)) for title, command in examples]
    except Exception:
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
            keyed = svc.get("ty") in ("VirtualObject", "Workflow")
            for h in svc.get("handlers", []):
                path = f"{svc['name']}/<key>/{h['name']}" if keyed else f"{svc['name']}/{h['name']}"
                data = "" if h.get("input_description") == "none" else " --json '…'"
                console.print(f"  curl {ingress}/{path}{data}", highlight=False, soft_wrap=True)
    console.print(
        f"Inspect with `pyrestate invocations list --admin-url {admin}`. Ctrl-C stops everything.",
        highlight=False,
    )
