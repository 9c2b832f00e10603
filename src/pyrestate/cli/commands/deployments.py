"""`pyrestate deployments`: register (discover), list and remove deployments."""

from __future__ import annotations

import click

from pyrestate.cli.admin_client import (
    AdminClient,
    seg,
)
from pyrestate.cli.options import (
    Group,
    admin_command,
    progress_spinner,
)
from pyrestate.cli.render import (
    console,
    err_console,
    print_json,
    table,
)
from pyrestate.server.deployments import redact_uri


@click.group(cls=Group)
def deployments() -> None:
    """Register, list and remove service deployments."""


def _parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--header")
        out[name.strip()] = value.strip()
    return out


@admin_command(deployments, "register")
@click.argument("uri")
@click.option("--force", is_flag=True, help="Overwrite an existing deployment and allow breaking changes.")
@click.option("--breaking", is_flag=True, help="Allow breaking changes to existing services.")
@click.option("--dry-run", is_flag=True, help="Discover and validate without registering.")
@click.option("--use-http-11", is_flag=True, help="Talk to the deployment over HTTP/1.1 (request/response).")
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME=VALUE",
    help="Extra header sent to the deployment (repeatable).",
)
def deployments_register(
    uri: str,
    force: bool,
    breaking: bool,
    dry_run: bool,
    use_http_11: bool,
    headers: tuple[str, ...],
    admin_url: str,
    as_json: bool,
) -> None:
    """Discover the services at URI and register them."""
    body = {
        "uri": uri,
        "additional_headers": _parse_headers(headers) or None,
        "use_http_11": use_http_11,
        "breaking": breaking,
        "force": force,
        "dry_run": dry_run,
    }
    progress = progress_spinner(f"Discovering {redact_uri(uri)}…", as_json)
    with AdminClient(admin_url, timeout=60.0) as client, progress:
        status, result = client.request("POST", "/v4/deployments", body)
    if as_json:
        print_json(result)
        return
    existed = status == 200
    verb = "validated (dry run)" if dry_run else ("already registered" if existed else "registered")
    console.print(f"Deployment [bold]{result['id']}[/] {verb}: {redact_uri(uri)}", highlight=False)
    console.print(
        table(
            ["SERVICE", "TYPE", "REVISION", "HANDLERS"],
            (
                [
                    s["name"],
                    s["ty"],
                    s.get("revision", ""),
                    ", ".join(h["name"] for h in s.get("handlers", [])),
                ]
                for s in result.get("services", [])
            ),
        )
    )
    if existed and not dry_run and not force:
        console.print("The deployment already existed; use --force to overwrite it.")


@admin_command(deployments, "list")
def deployments_list(admin_url: str, as_json: bool) -> None:
    """List registered deployments."""
    with AdminClient(admin_url) as client:
        items = client.get("/v4/deployments")["deployments"]
    if as_json:
        print_json(items)
        return
    if not items:
        err_console.print(
            "No deployments registered. Register one with `pyrestate deployments register URI`."
        )
        return
    console.print(
        table(
            ["ID", "URI", "TYPE", "PROTOCOL", "CREATED", "SERVICES"],
            (
                [
                    d["id"],
                    d.get("uri", ""),
                    d.get("protocol_type", ""),
                    f"{d.get('min_protocol_version')}-{d.get('max_protocol_version')}",
                    d.get("created_at", ""),
                    ", ".join(f"{s['name']} (rev {s['revision']})" for s in d.get("services", [])),
                ]
                for d in items
            ),
        )
    )


@admin_command(deployments, "remove")
@click.argument("deployment_id")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def deployments_remove(deployment_id: str, yes: bool, admin_url: str, as_json: bool) -> None:
    """Remove a deployment and the services it registered (in-flight invocations on it will fail)."""
    with AdminClient(admin_url) as client:
        dep = client.get(f"/v4/deployments/{seg(deployment_id)}")
        names = [s["name"] for s in dep.get("services", [])]
        if not yes and not as_json:
            click.confirm(
                f"Remove deployment {deployment_id} ({dep.get('uri')}) and services {', '.join(names)}?",
                abort=True,
            )
        client.request("DELETE", f"/v4/deployments/{seg(deployment_id)}", params={"force": "true"})
    if as_json:
        print_json({"id": deployment_id, "removed": True, "services": names})
    else:
        console.print(f"Removed deployment [bold]{deployment_id}[/]", highlight=False)
