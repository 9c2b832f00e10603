"""`pyrestate kv`: get, set and clear the state of a virtual object or workflow."""

from __future__ import annotations

import json
from typing import Any

import click

from pyrestate.cli.admin_client import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
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
def kv() -> None:
    """Read and change the state of a virtual object or workflow key."""


def _read_state(client: AdminClient, service: str, key: str) -> list[dict[str, Any]]:
    svc = client.get(f"/v4/services/{seg(service)}")
    if svc["ty"] == "Service":
        raise CliError(f"'{service}' is a plain service and has no state", EXIT_USAGE)
    return client.query(
        "SELECT key, value_utf8, value FROM state "
        f"WHERE service_name = {sql_str(service)} AND service_key = {sql_str(key)} ORDER BY key"
    )


def _state_bytes(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    return {r["key"]: list(bytes.fromhex(r.get("value") or "")) for r in rows}


@admin_command(kv, "get")
@click.argument("service")
@click.argument("key")
def kv_get(service: str, key: str, admin_url: str, as_json: bool) -> None:
    """Show the state of SERVICE/KEY (values as UTF-8 text where possible, else hex)."""
    with AdminClient(admin_url) as client:
        rows = _read_state(client, service, key)
    if as_json:
        print_json(
            {
                "service": service,
                "key": key,
                "state": [
                    {"key": r["key"], "value_utf8": r.get("value_utf8"), "value_hex": r.get("value") or ""}
                    for r in rows
                ],
            }
        )
        return
    if not rows:
        err_console.print(f"{service}/{key} has no state.")
        return
    console.print(
        table(
            ["KEY", "VALUE"],
            (
                [
                    r["key"],
                    r.get("value_utf8") if r.get("value_utf8") is not None else f"0x{r.get('value', '')}",
                ]
                for r in rows
            ),
            title=f"{service}/{key}",
        )
    )


@admin_command(kv, "set")
@click.argument("service")
@click.argument("key")
@click.argument("name")
@click.argument("value")
@click.option("--raw", is_flag=True, help="Store VALUE's text as is instead of checking it is JSON.")
def kv_set(service: str, key: str, name: str, value: str, raw: bool, admin_url: str, as_json: bool) -> None:
    """Set state entry NAME of SERVICE/KEY to VALUE (JSON, as the SDKs serialize it by default).

    The server replaces an object's whole state at once: the other entries are read first and written back
    unchanged, so do not race this with running handlers of the same key.
    """
    if not raw:
        try:
            json.loads(value)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not JSON; quote strings ('\"text\"') or pass --raw", param_hint="VALUE"
            ) from None
    with AdminClient(admin_url) as client:
        state = _state_bytes(_read_state(client, service, key))
        state[name] = list(value.encode())
        client.request("POST", f"/v4/services/{seg(service)}/state", {"object_key": key, "new_state": state})
    if as_json:
        print_json({"service": service, "key": key, "set": name})
    else:
        console.print(f"Set {service}/{key} {name} = {value}", highlight=False)


@admin_command(kv, "clear")
@click.argument("service")
@click.argument("key")
@click.argument("name", required=False)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def kv_clear(service: str, key: str, name: str | None, yes: bool, admin_url: str, as_json: bool) -> None:
    """Clear all state of SERVICE/KEY, or only entry NAME."""
    with AdminClient(admin_url) as client:
        state = _state_bytes(_read_state(client, service, key))
        if name is not None:
            if name not in state:
                raise CliError(f"{service}/{key} has no state entry '{name}'", EXIT_NOT_FOUND)
            del state[name]
        else:
            if not yes and not as_json:
                click.confirm(f"Clear all {len(state)} state entries of {service}/{key}?", abort=True)
            state = {}
        client.request("POST", f"/v4/services/{seg(service)}/state", {"object_key": key, "new_state": state})
    if as_json:
        print_json({"service": service, "key": key, "cleared": name or "*"})
    else:
        console.print(f"Cleared {service}/{key}" + (f" {name}" if name else ""), highlight=False)
