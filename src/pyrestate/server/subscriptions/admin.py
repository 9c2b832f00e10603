"""The admin API of subscriptions and Kafka clusters (`/subscriptions`, `/kafka-clusters`), answering as the
official server does. Routed here from the admin app; returns (status, JSON body or None, headers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pyrestate.server.resource_ids import IdDecodeError
from pyrestate.server.subscriptions.model import BodyError, SubscriptionError, check_subscription_id
from pyrestate.server.subscriptions.service import SubscriptionService

Answer = tuple[int, object, list[tuple[str, str]]]


class PlainAnswer(Exception):
    """A text/plain error (the official server's request extraction failures)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(e: SubscriptionError) -> Answer:
    return e.status, {"message": e.message, "restate_code": e.restate_code}, []


def _method_not_allowed(allow: str) -> Answer:
    return 405, None, [("allow", allow)]


def _check_id(value: str) -> None:
    try:
        check_subscription_id(value)
    except IdDecodeError as e:
        raise PlainAnswer(
            400, f"Invalid URL: Cannot parse `subscription` with value `{value}`: {e.reason}"
        ) from None


async def handle(
    service: SubscriptionService,
    method: str,
    segments: list[str],
    query: Mapping[str, str],
    body_json: Callable[[], Awaitable[Any]],
) -> Answer:
    try:
        return await _route(service, method, segments, query, body_json)
    except SubscriptionError as e:
        return _error(e)
    except BodyError as e:
        raise PlainAnswer(422, str(e)) from None


async def _route(
    service: SubscriptionService,
    method: str,
    segments: list[str],
    query: Mapping[str, str],
    body_json: Callable[[], Awaitable[Any]],
) -> Answer:
    match segments:
        case ["subscriptions"]:
            if method == "GET":
                subs = service.list(sink=query.get("sink"), source=query.get("source"))
                return 200, {"subscriptions": [s.to_json() for s in subs]}, []
            if method == "POST":
                sub = await service.create(await body_json())
                return 201, sub.to_json(), [("location", f"subscriptions/{sub.id}")]
            return _method_not_allowed("GET,POST")
        case ["subscriptions", sub_id]:
            _check_id(sub_id)
            if method == "GET":
                found = service.get(sub_id)
                if found is None:
                    raise SubscriptionError(404, f"The requested subscription '{sub_id}' does not exist")
                return 200, found.to_json(), []
            if method == "DELETE":
                await service.delete(sub_id)
                return 202, None, []
            return _method_not_allowed("GET,DELETE")
        case ["kafka-clusters"]:
            if method == "GET":
                return 200, {"clusters": [c.to_json() for c in service.clusters.values()]}, []
            return _method_not_allowed("GET")
        case ["kafka-clusters", name]:
            if method != "GET":
                return _method_not_allowed("GET")
            cluster = service.clusters.get(name)
            if cluster is None:
                raise SubscriptionError(404, f"The requested Kafka cluster '{name}' does not exist")
            include = query.get("include_subscriptions", "").lower() == "true"
            subs = [s for s in service.list() if s.cluster == name] if include else []
            return 200, cluster.to_json(subs), []
        case _:
            return 404, None, []
