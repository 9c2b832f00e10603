"""`/subscriptions` and `/kafka-clusters`: Kafka subscriptions and the clusters they read from, answering as
the official server does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyrestate.server.admin.http import (
    AdminError,
    PlainError,
    Request,
    Response,
    check_path_id,
    method_not_allowed,
)
from pyrestate.server.subscriptions.model import (
    BodyError,
    KafkaCluster,
    SubscriptionError,
    check_subscription_id,
)
from pyrestate.server.subscriptions.service import SubscriptionAdmin

if TYPE_CHECKING:
    from pyrestate.server.admin.app import AdminApp


def _service(app: AdminApp) -> SubscriptionAdmin | None:
    service = getattr(app.core, "subscriptions", None)
    return service if isinstance(service, SubscriptionAdmin) else None


async def route(app: AdminApp, req: Request) -> Response:
    service = _service(app)
    if service is None:
        return Response(404)
    try:
        return await _subscriptions(service, req)
    except SubscriptionError as e:
        raise AdminError(e.status, e.message, e.restate_code) from None
    except BodyError as e:
        raise PlainError(422, str(e)) from None


async def clusters_route(app: AdminApp, req: Request) -> Response:
    service = _service(app)
    if service is None:
        return Response(404)
    try:
        return await _clusters(service, req)
    except SubscriptionError as e:
        raise AdminError(e.status, e.message, e.restate_code) from None
    except BodyError as e:
        raise PlainError(422, str(e)) from None


async def _subscriptions(service: SubscriptionAdmin, req: Request) -> Response:
    method = req.method
    match req.path:
        case []:
            if method == "GET":
                subs = service.list(sink=req.query.get("sink"), source=req.query.get("source"))
                return Response(200, {"subscriptions": [s.to_json() for s in subs]})
            if method == "POST":
                sub = await service.create(await req.body_json())
                return Response(201, sub.to_json(), [("location", f"subscriptions/{sub.id}")])
            return method_not_allowed("GET,POST")
        case [sub_id]:
            check_path_id("subscription", sub_id, check_subscription_id)
            if method == "GET":
                found = service.get(sub_id)
                if found is None:
                    raise AdminError(404, f"The requested subscription '{sub_id}' does not exist")
                return Response(200, found.to_json())
            if method == "DELETE":
                await service.delete(sub_id)
                return Response(202)
            return method_not_allowed("GET,DELETE")
        case _:
            return Response(404)


def _clusters_in_order(service: SubscriptionAdmin) -> list[KafkaCluster]:
    return sorted(service.clusters.values(), key=lambda c: c.name)


async def _clusters(service: SubscriptionAdmin, req: Request) -> Response:
    method = req.method
    match req.path:
        case []:
            if method == "GET":
                return Response(200, {"clusters": [c.to_json() for c in _clusters_in_order(service)]})
            if method == "POST":
                cluster = await service.create_cluster(await req.body_json())
                return Response(201, cluster.to_json(), [("location", f"kafka-clusters/{cluster.name}")])
            return method_not_allowed("GET,POST")
        case [name]:
            if method == "GET":
                found = service.clusters.get(name)
                if found is None:
                    raise AdminError(404, f"The requested Kafka cluster '{name}' does not exist")
                include = req.query.get("include_subscriptions", "").lower() == "true"
                subs = [s for s in service.list() if s.cluster == name] if include else []
                return Response(200, found.to_json(subs))
            if method == "PATCH":
                cluster = await service.update_cluster(name, await req.body_json())
                return Response(200, cluster.to_json())
            if method == "DELETE":
                force = req.query.get("force", "false")
                if force not in ("true", "false"):
                    raise PlainError(
                        400,
                        "Failed to deserialize query string: force: provided string was not "
                        "`true` or `false`",
                    )
                await service.delete_cluster(name, force == "true")
                return Response(202)
            return method_not_allowed("GET,HEAD,PATCH,DELETE")
        case _:
            return Response(404)
