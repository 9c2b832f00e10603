"""Several `pyrestate server` nodes on one PostgreSQL database, as separate machines would run them (each with
its own ports, node id and inter-node address), for tests that need a cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pyrestate.testing.process import free_port
from pyrestate.testing.runtime import PyrestateServer, RuntimeConfig


def pg_node(
    storage_url: str,
    name: str,
    data_dir: Path,
    *,
    log_dir: Path | None = None,
    config: RuntimeConfig | None = None,
    partitions: int = 8,
    partition_groups: int = 6,
    lease_ttl: str = "1500ms",
) -> PyrestateServer:
    """One node: `--node-bind` on a free loopback port puts it in cluster mode. Ports stay fixed across
    restarts, as a machine's would."""
    base = config or RuntimeConfig()
    env = {
        "PYRESTATE_STORAGE": storage_url,
        "PYRESTATE_NODE_ID": name,
        "PYRESTATE_NODE_BIND": f"127.0.0.1:{free_port()}",
        "PYRESTATE_PARTITIONS": str(partitions),
        "PYRESTATE_PARTITION_GROUPS": str(partition_groups),
        "PYRESTATE_LEASE_TTL": lease_ttl,
        **base.extra_env,
    }
    return PyrestateServer(dataclasses.replace(base, extra_env=env), data_dir, log_dir, name=name)


class NodeCluster:
    """`count` nodes named n1…nN. Clients enter through the first node (`ingress_url`, `admin_url`); requests
    for partitions another node owns are routed there by the first node."""

    def __init__(
        self,
        storage_url: str,
        data_dir: Path,
        *,
        count: int = 3,
        log_dir: Path | None = None,
        config: RuntimeConfig | None = None,
        lease_ttl: str = "1500ms",
    ) -> None:
        self.nodes = [
            pg_node(
                storage_url,
                f"n{i}",
                data_dir / f"n{i}",
                log_dir=log_dir,
                config=config,
                lease_ttl=lease_ttl,
            )
            for i in range(1, count + 1)
        ]

    @property
    def ingress_url(self) -> str:
        return self.nodes[0].ingress_url

    @property
    def admin_url(self) -> str:
        return self.nodes[0].admin_url

    def start(self) -> None:
        for n in self.nodes:
            n.start()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(f"--- {n.process.name}\n{n.log_tail(lines)}" for n in self.nodes)

    def close(self) -> None:
        for n in self.nodes:
            n.close()


__all__ = ["NodeCluster", "pg_node"]
