"""`pyrestate kafka-clusters`: list, describe, create, patch and delete the Kafka clusters subscriptions read
from, as the official CLI's `restate kafka-clusters` does, over the admin API."""

from __future__ import annotations

from urllib.parse import quote

import click

from pyrestate.cli.admin_client import AdminClient
from pyrestate.cli.commands.subscriptions import _options
from pyrestate.cli.options import Group, admin_command
from pyrestate.cli.render import console, err_console, print_json, table


@click.group("kafka-clusters", cls=Group)
def kafka_clusters() -> None:
    """Manage the Kafka clusters that subscriptions read from."""


def _path(name: str) -> str:
    return f"/kafka-clusters/{quote(name, safe='')}"


@admin_command(kafka_clusters, "list")
def clusters_list(admin_url: str, as_json: bool) -> None:
    """List the Kafka clusters (registered ones and those of the config file)."""
    with AdminClient(admin_url) as client:
        items = client.get("/kafka-clusters")["clusters"]
    if as_json:
        print_json(items)
        return
    if not items:
        err_console.print("No Kafka clusters; register one with `pyrestate kafka-clusters create`.")
        return
    console.print(
        table(
            ["NAME", "BROKERS", "CREATED"],
            (
                [
                    c["name"],
                    c["properties"].get("bootstrap.servers")
                    or c["properties"].get("metadata.broker.list", ""),
                    c["created_at"],
                ]
                for c in items
            ),
        )
    )


@admin_command(kafka_clusters, "describe")
@click.argument("name")
def clusters_describe(admin_url: str, as_json: bool, name: str) -> None:
    """Print a cluster's properties (secrets shown as ***) and the subscriptions reading from it."""
    with AdminClient(admin_url) as client:
        _, cluster = client.request("GET", _path(name), params={"include_subscriptions": "true"})
    if as_json:
        print_json(cluster)
        return
    rows = [["Name", cluster["name"]], ["Created", cluster["created_at"]]]
    rows += [[f"property {k}", v] for k, v in sorted(cluster["properties"].items())]
    rows += [
        ["subscription", f"{s['id']}: {s['source']} → {s['sink']}"] for s in cluster.get("subscriptions", [])
    ]
    console.print(table(["", ""], rows))


@admin_command(kafka_clusters, "create")
@click.argument("name")
@click.argument("properties", nargs=-1, metavar="KEY=VALUE...")
def clusters_create(admin_url: str, as_json: bool, name: str, properties: tuple[str, ...]) -> None:
    """Register a cluster: NAME, then librdkafka properties, at least bootstrap.servers=host:port."""
    body = {"name": name, "properties": _options(properties)}
    with AdminClient(admin_url) as client:
        _, cluster = client.request("POST", "/kafka-clusters", body)
    if as_json:
        print_json(cluster)
        return
    console.print(f"Created Kafka cluster {cluster['name']}", highlight=False)


@admin_command(kafka_clusters, "patch")
@click.argument("name")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Set a property.")
@click.option("--unset", "removals", multiple=True, metavar="KEY", help="Remove a property.")
def clusters_patch(
    admin_url: str, as_json: bool, name: str, assignments: tuple[str, ...], removals: tuple[str, ...]
) -> None:
    """Change a registered cluster's properties; its subscriptions' consumers restart with them."""
    with AdminClient(admin_url) as client:
        # The API replaces every property: start from the stored ones (not redacted ones the server hides).
        current = client.get(_path(name))["properties"]
        hidden = [k for k, v in current.items() if v == "***" and k not in dict(_options(assignments))]
        if hidden and not set(hidden) <= set(removals):
            raise click.UsageError(
                f"the server hides the values of {', '.join(sorted(hidden))}: give them again with --set"
            )
        props = {k: v for k, v in current.items() if k not in removals}
        props.update(_options(assignments))
        _, cluster = client.request("PATCH", _path(name), {"properties": props})
    if as_json:
        print_json(cluster)
        return
    console.print(f"Updated Kafka cluster {cluster['name']}", highlight=False)


@admin_command(kafka_clusters, "delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even when subscriptions read from it (they stay, idle).")
def clusters_delete(admin_url: str, as_json: bool, name: str, force: bool) -> None:
    """Remove a registered cluster."""
    with AdminClient(admin_url) as client:
        client.request("DELETE", _path(name), params={"force": "true" if force else "false"})
    if as_json:
        print_json({"deleted": name})
        return
    console.print(f"Deleted Kafka cluster {name}", highlight=False)
