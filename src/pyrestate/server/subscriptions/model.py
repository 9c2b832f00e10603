"""Kafka subscriptions as Restate 1.7 defines them: pure data, validation and the record → invocation mapping.

A subscription reads `kafka://CLUSTER/TOPIC` into `service://SERVICE/HANDLER`. The official server's answers
(errors, defaulted options, JSON shapes) are reproduced here; nothing in this module does IO.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import xxhash

from pyrestate.protocol.ids import InvocationId, SubscriptionId, new_ulid, partition_key_for_key
from pyrestate.server.core_api import ServiceSchema, ServiceType
from pyrestate.server.resource_ids import IdDecodeError, _base62_payload, _split

DEFAULT_CLIENT_ID = "restate"  # what the official server puts in `client.id` when it is not given
STATIC_CLUSTER_INFO = (
    "This Kafka cluster was configured in the static cluster configuration, this is deprecated. "
    "Please register it using the new Kafka Admin functionalities."
)


class SubscriptionError(ValueError):
    """A refused subscription: the admin API answers `status` with `{"message", "restate_code"}`."""

    def __init__(self, status: int, message: str, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.restate_code = restate_code

    def __reduce__(self) -> tuple[type[SubscriptionError], tuple[int, str, str | None]]:
        # Raised on worker 0 and answered by the worker the admin request reached: it crosses a process.
        return SubscriptionError, (self.status, self.message, self.restate_code)


class BodyError(ValueError):
    """The request body does not have the expected type (the official server's plain-text 422)."""


# Properties whose values the official server answers as "***": any name with "password" or "secret" in it
# (any case), and these.
_SENSITIVE_PROPERTIES = frozenset(
    {
        "sasl.username",
        "sasl.jaas.config",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "ssl.key.location",
        "ssl.keystore.location",
    }
)
REDACTED = "***"


def redact(name: str, value: str) -> str:
    lowered = name.lower()
    sensitive = "password" in lowered or "secret" in lowered or lowered in _SENSITIVE_PROPERTIES
    return REDACTED if sensitive else value


@dataclass(frozen=True, slots=True)
class KafkaCluster:
    """A Kafka cluster subscriptions read from: its name and librdkafka properties. `created_at` (RFC 3339)
    is None for a cluster of the config file's `[[ingress.kafka-clusters]]`, else it was registered through
    the admin API."""

    name: str
    properties: tuple[tuple[str, str], ...]
    created_at: str | None = None

    @property
    def bootstrap_servers(self) -> list[str]:
        """host:port of each broker (`PLAINTEXT://host:port` as librdkafka writes them, or bare)."""
        raw = dict(self.properties).get("metadata.broker.list") or dict(self.properties).get(
            "bootstrap.servers", ""
        )
        out = []
        for item in raw.split(","):
            item = item.strip()
            if "://" in item:
                item = item.split("://", 1)[1]
            if item:
                out.append(item)
        return out

    @property
    def configured_in_file(self) -> bool:
        return self.created_at is None

    def to_json(self, subscriptions: Sequence[Subscription] | None = None) -> dict[str, object]:
        d: dict[str, object] = {
            "name": self.name,
            "properties": {k: redact(k, v) for k, v in self.properties},
            # a cluster of the config file has no creation time: the official server says the epoch
            "created_at": self.created_at or "1970-01-01T00:00:00Z",
        }
        if subscriptions is not None:
            d["subscriptions"] = [s.to_json() for s in subscriptions]
        if self.configured_in_file:
            d["info"] = [{"message": STATIC_CLUSTER_INFO}]
        return d

    def encode(self) -> bytes:
        doc = {"name": self.name, "properties": dict(self.properties), "created_at": self.created_at}
        return json.dumps(doc, separators=(",", ":")).encode()


def decode_cluster(raw: bytes) -> KafkaCluster:
    d = json.loads(raw)
    return KafkaCluster(d["name"], tuple(d["properties"].items()), d["created_at"])


_BODY = "Failed to deserialize the JSON body into the target type: "
# What the official server takes as a cluster name: a URI authority (RFC 3986 characters, no "/?#").
_AUTHORITY_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@[]"
)


def _cluster_properties(body: dict[str, object]) -> dict[str, str]:
    if "properties" not in body:
        raise BodyError(_BODY + "missing field `properties`")
    props = body["properties"]
    if not isinstance(props, dict):
        raise BodyError(_BODY + "properties: invalid type: expected a map")
    for k, v in props.items():
        if not isinstance(v, str):
            shown = "null" if v is None else type(v).__name__
            raise BodyError(_BODY + f"properties.{k}: invalid type: {shown}, expected a string")
    return dict(props)


def _check_broker_properties(name: str, props: Mapping[str, str]) -> None:
    if "bootstrap.servers" not in props and "metadata.broker.list" not in props:
        raise SubscriptionError(
            400,
            f"kafka cluster '{name}' properties must contain either 'bootstrap.servers' or "
            "'metadata.broker.list'",
        )


def parse_cluster_request(body: object, created_at: str) -> KafkaCluster:
    """A `POST /kafka-clusters` body → the cluster to store, checked as the official server checks it."""
    if not isinstance(body, dict):
        raise BodyError(_BODY + "invalid type: expected struct CreateKafkaClusterRequest")
    if "name" not in body:
        raise BodyError(_BODY + "missing field `name`")
    name = body["name"]
    if not isinstance(name, str):
        raise BodyError(_BODY + "name: invalid type: expected a string")
    if not name:
        raise BodyError(_BODY + "name: empty string")
    if any(c not in _AUTHORITY_CHARS and c != "%" for c in name):
        raise BodyError(_BODY + "name: invalid uri character")
    if "%" in name:
        raise BodyError(_BODY + "name: invalid authority")
    props = _cluster_properties(body)
    _check_broker_properties(name, props)
    return KafkaCluster(name, tuple(props.items()), created_at)


def parse_cluster_update(cluster: KafkaCluster, body: object) -> KafkaCluster:
    """A `PATCH /kafka-clusters/{name}` body: the new properties replace all the old ones."""
    if not isinstance(body, dict):
        raise BodyError(_BODY + "invalid type: expected struct UpdateKafkaClusterRequest")
    props = _cluster_properties(body)
    _check_broker_properties(cluster.name, props)
    return KafkaCluster(cluster.name, tuple(props.items()), cluster.created_at)


def cluster_from_config(entry: Mapping[str, object]) -> KafkaCluster:
    """One `[[ingress.kafka-clusters]]` table: `name`, `brokers` (a list), any other key a librdkafka
    property (kept as text)."""
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("ingress.kafka-clusters: every cluster needs a `name`")
    brokers = entry.get("brokers", [])
    if isinstance(brokers, str):
        brokers = [brokers]
    if not isinstance(brokers, list) or not all(isinstance(b, str) for b in brokers) or not brokers:
        raise ValueError(f"ingress.kafka-clusters {name!r}: `brokers` must be a non-empty list of strings")
    props = [("metadata.broker.list", ",".join(brokers))]
    for k, v in entry.items():
        if k in ("name", "brokers"):
            continue
        props.append(
            (
                k,
                json.dumps(v)
                if isinstance(v, (list, dict))
                else str(v).lower()
                if isinstance(v, bool)
                else str(v),
            )
        )
    return KafkaCluster(name, tuple(props))


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    source: str  # kafka://cluster/topic
    sink: str  # service://Service/handler
    options: tuple[tuple[str, str], ...]

    @property
    def cluster(self) -> str:
        return self.source[len("kafka://") :].split("/", 1)[0]

    @property
    def topic(self) -> str:
        return self.source[len("kafka://") :].split("/", 1)[1]

    @property
    def service(self) -> str:
        return self.sink[len("service://") :].split("/", 1)[0]

    @property
    def handler(self) -> str:
        return self.sink[len("service://") :].split("/", 1)[1]

    @property
    def group_id(self) -> str:
        return dict(self.options)["group.id"]

    @property
    def client_id(self) -> str:
        return dict(self.options).get("client.id", DEFAULT_CLIENT_ID)

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "source": self.source, "sink": self.sink, "options": dict(self.options)}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


def decode_subscription(raw: bytes) -> Subscription:
    d = json.loads(raw)
    return Subscription(d["id"], d["source"], d["sink"], tuple((k, v) for k, v in d["options"].items()))


def check_subscription_id(text: str) -> str:
    """`sub_1` + base62(u128 ULID, 22); IdDecodeError as the official path extractor words it."""
    prefix, payload = _split(text)
    if prefix != "sub":
        raise IdDecodeError(IdDecodeError.TYPE_MISMATCH)
    _base62_payload(payload, ((22, 16),))
    return text


def _normalize_uri(text: str, scheme: str) -> str | None:
    """`scheme://authority[/path]` with an empty path written as "/" (as the official server stores it);
    None when `text` is not a URI of that scheme."""
    if not text.startswith(scheme + "://"):
        return None
    rest = text[len(scheme) + 3 :]
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority}/{path if slash else ''}"


def _looks_like_uri(text: str) -> bool:
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isascii() and scheme[:1].isalpha() and not any(c.isspace() for c in text)


def parse_request(
    body: object,
    *,
    subscription_id: str,
    services: Mapping[str, ServiceSchema],
    clusters: Iterable[str],
) -> Subscription:
    """A `POST /subscriptions` body → the subscription to store, checked as the official server checks it:
    body shape (BodyError), then the source scheme, the sink, then the cluster."""
    if not isinstance(body, dict):
        raise BodyError("Failed to deserialize the JSON body into the target type: invalid type")
    for name in ("source", "sink"):
        if name not in body:
            raise BodyError(
                f"Failed to deserialize the JSON body into the target type: missing field `{name}`"
            )
        if not isinstance(body[name], str):
            raise BodyError(f"Failed to deserialize the JSON body into the target type: {name}: invalid type")
    source, sink = str(body["source"]), str(body["sink"])
    raw_options = body.get("options")
    if raw_options is None:
        raw_options = {}
    if not isinstance(raw_options, dict):
        raise BodyError("Failed to deserialize the JSON body into the target type: options: invalid type")
    for k, v in raw_options.items():
        if not isinstance(v, str):
            raise BodyError(
                f"Failed to deserialize the JSON body into the target type: options.{k}: invalid type: "
                "expected a string"
            )
    for name, text in (("source", source), ("sink", sink)):
        if not _looks_like_uri(text):
            raise BodyError(
                f"Failed to deserialize the JSON body into the target type: {name}: invalid format"
            )
    norm_source = _normalize_uri(source, "kafka")
    if norm_source is None:
        raise SubscriptionError(
            400,
            f"[META0009] invalid source URI '{source}': must have a scheme segment, with supported schemes: "
            "[kafka].",
            "META0009",
        )
    if norm_source.startswith("kafka:///"):
        raise BodyError("Failed to deserialize the JSON body into the target type: source: invalid format")
    norm_sink = _normalize_uri(sink, "service")
    if norm_sink is None:
        raise SubscriptionError(
            400,
            f"[META0009] invalid sink URI '{sink}': must have a scheme segment, with supported schemes: "
            "[service].",
            "META0009",
        )
    svc_name, _, handler = norm_sink[len("service://") :].partition("/")
    svc = services.get(svc_name)
    if svc is None or "/" in handler or handler not in svc.handlers:
        raise SubscriptionError(
            400,
            f"[META0009] invalid sink URI '{norm_sink}': cannot find service/handler specified in the sink "
            "URI.",
            "META0009",
        )
    cluster = norm_source[len("kafka://") :].split("/", 1)[0]
    known = list(clusters)
    if cluster not in known:
        listed = ", ".join(json.dumps(c) for c in known)
        raise SubscriptionError(400, f"Kafka cluster '{cluster}' not found. Available clusters: [{listed}]")
    options = dict(raw_options)
    options.setdefault("group.id", subscription_id)
    options.setdefault("client.id", DEFAULT_CLIENT_ID)
    return Subscription(subscription_id, norm_source, norm_sink, tuple(options.items()))


def new_subscription_id() -> str:
    return str(SubscriptionId.generate())


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None


def producer_id(group_id: str, topic: str, partition: int) -> str:
    """Whose sequence numbers (offsets) a record continues: the official server's deduplication id."""
    return f"{group_id}-{topic}-{partition}"


def record_headers(sub: Subscription, rec: KafkaRecord) -> tuple[tuple[str, str], ...]:
    """The invocation headers the official server gives a record (its own headers are not passed on)."""
    headers = [
        ("kafka.offset", str(rec.offset)),
        ("kafka.topic", rec.topic),
        ("kafka.partition", str(rec.partition)),
    ]
    if rec.timestamp_ms is not None:
        headers.append(("kafka.timestamp", str(rec.timestamp_ms)))
    headers.append(("restate.subscription.id", sub.id))
    if rec.key is not None:
        headers.append(("kafka.key", base64.b64encode(rec.key).decode()))
    return tuple(headers)


def object_key(rec: KafkaRecord) -> str:
    """The object key of a record sent to a virtual object: its Kafka key as text (empty without one)."""
    return (rec.key or b"").decode("utf-8", errors="replace")


def invocation_id_for(sub: Subscription, rec: KafkaRecord, ty: ServiceType) -> str:
    """A keyed target lives in its key's partition; a plain service's records spread over partitions by a
    hash of (group, topic, partition, offset), so a redelivery lands where the first delivery was checked."""
    if ty is ServiceType.SERVICE:
        pk = xxhash.xxh64_intdigest(
            f"{producer_id(sub.group_id, rec.topic, rec.partition)}/{rec.offset}".encode()
        )
    else:
        pk = partition_key_for_key(object_key(rec))
    return str(InvocationId(pk, new_ulid()))
