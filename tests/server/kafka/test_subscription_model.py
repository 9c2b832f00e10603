"""Pure parts: the config file, the partition's dedup of redelivered records, cluster property redaction."""

from __future__ import annotations

import pickle
from pathlib import Path

from pyrestate.protocol.ids import InvocationId
from pyrestate.server.config_file import load
from pyrestate.server.core_api import HandlerType, ServiceType
from pyrestate.server.partition.context import ApplyContext
from pyrestate.server.partition.model import Duplicate, Ingest, InvocationRequest, Reply, Submitted
from pyrestate.server.partition.state_machine import apply
from pyrestate.server.storage.memory import MemoryStorage
from pyrestate.server.storage.records import Target
from pyrestate.server.subscriptions.model import SubscriptionError, redact


def test_config_file_reads_restate_names_and_clusters(tmp_path: Path) -> None:
    path = tmp_path / "restate.toml"
    path.write_text(
        'base-dir = "/d"\ndefault-num-partitions = 8\nroles = ["worker"]\n'
        '[admin.query-engine]\nmemory-size = "1.0 GiB"\n'
        '[worker.invoker]\ninactivity-timeout = "30s"\n'
        '[ingress]\nbind-address = "127.0.0.1:1"\n'
        '[[ingress.kafka-clusters]]\nname = "c1"\nbrokers = ["PLAINTEXT://h:9092", "h2:9093"]\n'
        '"security.protocol" = "plaintext"\n'
    )
    values, clusters, unknown = load(path)
    assert values["data_dir"] == "/d" and values["partitions"] == "8"
    assert values["query_memory_bytes"] == str(1024**3) and values["inactivity_timeout_ms"] == "30s"
    assert unknown == ["roles"]
    assert [c.name for c in clusters] == ["c1"]
    assert clusters[0].bootstrap_servers == ["h:9092", "h2:9093"]
    assert dict(clusters[0].properties)["security.protocol"] == "plaintext"


class _Schema:
    def lookup_service(self, name: str) -> None:
        return None


def test_a_redelivered_record_is_dropped() -> None:
    storage = MemoryStorage()
    target = Target("Svc", "h", None, ServiceType.SERVICE, HandlerType.SHARED)
    ctx = ApplyContext(0, 1, 1000, _Schema())  # type: ignore[arg-type]

    def ingest(iid: str, seq: int, token: int) -> object:
        txn = storage.begin()
        req = InvocationRequest(iid, target, b"{}", invoked_by="subscription", invoked_by_id="sub_1")
        actions = apply(txn, Ingest(req, "g-t-0", seq, token), ctx)
        storage.commit_now(txn)
        return next(a.value for a in actions if isinstance(a, Reply))

    ids = [str(InvocationId.generate(i)) for i in range(4)]
    assert isinstance(ingest(ids[0], 5, 1), Submitted)
    assert ingest(ids[1], 5, 2) == Duplicate(5)  # the same offset again, under another id
    assert ingest(ids[2], 3, 3) == Duplicate(3)
    assert isinstance(ingest(ids[3], 6, 4), Submitted)
    assert storage.reader().get_invocation_status(ids[1]) is None


def test_cluster_properties_redacted_as_the_official_server_does() -> None:
    # restate-server 1.7.12 answered "***" for exactly these of the properties it was given.
    hidden = ["sasl.password", "ssl.key.password", "Password", "SECRET", "mypasswordx", "my.secret"]
    hidden += ["sasl.username", "sasl.jaas.config", "sasl.oauthbearer.config", "ssl.key.pem"]
    hidden += ["ssl.key.location", "ssl.keystore.location", "sasl.oauthbearer.client.secret"]
    shown = ["bootstrap.servers", "api.key", "token", "ssl.ca.pem", "ssl.certificate.pem", "username"]
    shown += ["sasl.kerberos.keytab", "ssl_key", "user", "credentials", "private.key", "ssl.keystore.pem"]
    shown += ["sasl.oauthbearer.client.id", "x.key.pem", "oauthbearer.config", "client.id"]
    assert all(redact(k, "v") == "***" for k in hidden)
    assert all(redact(k, "v") == "v" for k in shown)


def test_a_refusal_crosses_processes_intact() -> None:
    # Raised on worker 0, answered by the worker the admin request reached.
    e = pickle.loads(pickle.dumps(SubscriptionError(400, "[META0009] bad sink", "META0009")))
    assert (e.status, e.message, e.restate_code) == (400, "[META0009] bad sink", "META0009")
