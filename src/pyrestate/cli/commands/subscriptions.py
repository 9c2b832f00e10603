"""`pyrestate subscriptions` (alias `sub`): list, create, describe and delete Kafka subscriptions, as the
official CLI's `restate subscriptions` does, over the admin API."""

from __future__ import annotations

import click

from pyrestate.cli.admin_client import AdminClient, CliError
from pyrestate.cli.options import Group, admin_command
from pyrestate.cli.render import console, err_console, print_json, table


@click.group(cls=Group)
def subscriptions() -> None:
    """Manage Kafka subscriptions (alias: sub)."""


def _options(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"expected KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


@admin_command(subscriptions, "list")
@click.option("--sink", default=None, help="Only subscriptions into this sink (service://Svc/handler).")
@click.option("--source", default=None, help="Only subscriptions from this source (kafka://cluster/topic).")
def subscriptions_list(admin_url: str, as_json: bool, sink: str | None, source: str | None) -> None:
    """List the subscriptions."""
    params = {k: v for k, v in (("sink", sink), ("source", source)) if v is not None}
    with AdminClient(admin_url) as client:
        _, body = client.request("GET", "/subscriptions", params=params)
    items = body["subscriptions"]
    if as_json:
        print_json(items)
        return
    if not items:
        err_console.print("No subscriptions; create one with `pyrestate subscriptions create`.")
        return
    console.print(
        table(
            ["ID", "SOURCE", "SINK", "OPTIONS"],
            ([s["id"], s["source"], s["sink"], len(s["options"])] for s in items),
        )
    )


@admin_command(subscriptions, "create")
@click.argument("source")
@click.argument("sink")
@click.argument("options", nargs=-1, metavar="[KEY=VALUE]...")
def subscriptions_create(
    admin_url: str, as_json: bool, source: str, sink: str, options: tuple[str, ...]
) -> None:
    """Create a subscription: SOURCE kafka://cluster/topic, SINK service://Svc/handler, options such as
    group.id=… or auto.offset.reset=earliest."""
    body = {"source": source, "sink": sink, "options": _options(options)}
    with AdminClient(admin_url) as client:
        _, sub = client.request("POST", "/subscriptions", body)
    if as_json:
        print_json(sub)
        return
    console.print(f"Created subscription {sub['id']}: {sub['source']} → {sub['sink']}", highlight=False)


@admin_command(subscriptions, "describe")
@click.argument("subscription_id")
def subscriptions_describe(admin_url: str, as_json: bool, subscription_id: str) -> None:
    """Print a subscription's source, sink and options."""
    with AdminClient(admin_url) as client:
        sub = client.get(f"/subscriptions/{subscription_id}")
    if as_json:
        print_json(sub)
        return
    rows = [["ID", sub["id"]], ["Source", sub["source"]], ["Sink", sub["sink"]]]
    rows += [[f"option {k}", v] for k, v in sorted(sub["options"].items())]
    console.print(table(["", ""], rows))


@admin_command(subscriptions, "delete")
@click.argument("subscription_id")
def subscriptions_delete(admin_url: str, as_json: bool, subscription_id: str) -> None:
    """Delete a subscription: its consumption stops."""
    with AdminClient(admin_url) as client:
        client.request("DELETE", f"/subscriptions/{subscription_id}")
    if as_json:
        print_json({"deleted": subscription_id})
        return
    console.print(f"Deleted subscription {subscription_id}", highlight=False)
