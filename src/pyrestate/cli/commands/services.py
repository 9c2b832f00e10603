"""`pyrestate services`: list, describe and show the invocation status of services."""

from __future__ import annotations

import click

from pyrestate.cli.admin_client import (
    EXIT_NOT_FOUND,
    AdminClient,
    CliError,
    seg,
)
from pyrestate.cli.options import (
    Group,
    admin_command,
)
from pyrestate.cli.render import (
    console,
    err_console,
    print_json,
    sql_str,
    table,
)


@click.group(cls=Group)
def services() -> None:
    """Inspect registered services."""


@admin_command(services, "list")
def services_list(admin_url: str, as_json: bool) -> None:
    """List registered services."""
    with AdminClient(admin_url) as client:
        items = client.get("/v4/services")["services"]
    if as_json:
        print_json(items)
        return
    if not items:
        err_console.print(
            "No services registered. Register a deployment with `pyrestate deployments register`."
        )
        return
    console.print(
        table(
            ["NAME", "TYPE", "REVISION", "DEPLOYMENT", "PUBLIC", "HANDLERS"],
            (
                [
                    s["name"],
                    s["ty"],
                    s["revision"],
                    s["deployment_id"],
                    str(s["public"]).lower(),
                    ", ".join(h["name"] for h in s.get("handlers", [])),
                ]
                for s in sorted(items, key=lambda s: s["name"])
            ),
        )
    )


@admin_command(services, "describe")
@click.argument("service")
def services_describe(service: str, admin_url: str, as_json: bool) -> None:
    """Show a service: type, deployment, settings and handlers with their input and output."""
    with AdminClient(admin_url) as client:
        svc = client.get(f"/v4/services/{seg(service)}")
        dep = client.get(f"/v4/deployments/{seg(svc['deployment_id'])}")
    if as_json:
        print_json({**svc, "deployment": {k: v for k, v in dep.items() if k != "services"}})
        return
    info = [
        ("Name", svc["name"]),
        ("Type", svc["ty"]),
        ("Revision", svc["revision"]),
        ("Public", str(svc["public"]).lower()),
        ("Deployment", f"{svc['deployment_id']} ({dep.get('uri', '?')})"),
        ("SDK", dep.get("sdk_version") or "?"),
    ]
    for key in (
        "inactivity_timeout",
        "abort_timeout",
        "journal_retention",
        "idempotency_retention",
        "workflow_completion_retention",
    ):
        if svc.get(key) is not None:
            info.append((key.replace("_", " ").capitalize(), svc[key]))
    console.print(table(["", ""], info, title="Service"))
    console.print(
        table(
            ["HANDLER", "TYPE", "INPUT", "OUTPUT", "PUBLIC"],
            (
                [
                    h["name"],
                    h.get("ty", ""),
                    h.get("input_description", ""),
                    h.get("output_description", ""),
                    str(h.get("public", True)).lower(),
                ]
                for h in svc.get("handlers", [])
            ),
            title="Handlers",
        )
    )


STATUS_COLUMNS = (
    "pending",
    "scheduled",
    "ready",
    "running",
    "backing-off",
    "suspended",
    "paused",
    "completed",
)


@admin_command(services, "status")
@click.argument("service", required=False)
def services_status(service: str | None, admin_url: str, as_json: bool) -> None:
    """Invocation counts per service and handler, by status."""
    where = f" WHERE target_service_name = {sql_str(service)}" if service else ""
    with AdminClient(admin_url) as client:
        names = [s["name"] for s in client.get("/v4/services")["services"]]
        if service and service not in names:
            raise CliError(f"The requested service '{service}' does not exist", EXIT_NOT_FOUND)
        rows = client.query(
            "SELECT target_service_name AS service, target_handler_name AS handler, status, "
            f"COUNT(*) AS n FROM sys_invocation{where} "
            "GROUP BY target_service_name, target_handler_name, status"
        )
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        counts.setdefault((r["service"], r["handler"]), {})[r["status"]] = int(r["n"])
    if as_json:
        print_json([{"service": s, "handler": h, "counts": c} for (s, h), c in sorted(counts.items())])
        return
    out = []
    for (svc_name, handler), c in sorted(counts.items()):
        out.append([svc_name, handler, *(c.get(k) or "-" for k in STATUS_COLUMNS)])
    for name in sorted(set(names) - {s for s, _ in counts}):
        if not service or name == service:
            out.append([name, "", *("-" for _ in STATUS_COLUMNS)])
    console.print(table(["SERVICE", "HANDLER", *(k.upper() for k in STATUS_COLUMNS)], out))
