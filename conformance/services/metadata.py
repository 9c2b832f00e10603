"""FailureMetadata and FailureMetadataWorkflow: failures carrying metadata travel through an awakeable, a
named signal and a durable promise, and come back to the awaiting handler, which fails with them.

Neither SDK's public reject API takes metadata (only TerminalError does), so the rejecting side writes the
failure through the SDK's VM: the same command any SDK emits for a rejection, with metadata set."""

from typing import Any

from conformance.services._sdk import SDK_NAME, restate

PROMISE = "p"
SIGNAL = "s"


def _reject_awakeable(ctx: Any, awakeable_id: str, req: dict[str, Any]) -> None:
    if SDK_NAME == "pyrestate":
        ctx.vm.sys_complete_awakeable(awakeable_id, _pyrestate_failure(req))
    else:
        ctx.vm.vm.sys_complete_awakeable_failure(awakeable_id, _official_failure(req))


def _reject_signal(ctx: Any, invocation_id: str, req: dict[str, Any]) -> None:
    if SDK_NAME == "pyrestate":
        ctx.vm.sys_send_signal(invocation_id, SIGNAL, _pyrestate_failure(req))
    else:
        ctx.vm.vm.sys_complete_signal_failure(invocation_id, SIGNAL, _official_failure(req))


def _reject_promise(ctx: Any, req: dict[str, Any]) -> None:
    if SDK_NAME == "pyrestate":
        ctx.vm.sys_complete_promise(PROMISE, _pyrestate_failure(req))
    else:
        ctx.vm.vm.sys_complete_promise_failure(PROMISE, _official_failure(req))


def _pyrestate_failure(req: dict[str, Any]) -> Any:
    from pyrestate.protocol.outcome import Failure, metadata_of

    return Failure(req["code"], req["message"], metadata_of(req["metadata"]))


def _official_failure(req: dict[str, Any]) -> Any:
    from restate._internal import PyFailure  # type: ignore[import-not-found]

    return PyFailure(req["code"], req["message"], metadata=list(req["metadata"].items()))


metadata_failures = restate.VirtualObject("FailureMetadata")


@metadata_failures.handler(name="awaitAwakeable")
async def await_awakeable(ctx: restate.ObjectContext, req: dict[str, Any]) -> str:
    awakeable_id, awakeable = ctx.awakeable(type_hint=str)
    ctx.object_send(reject_awakeable, key=ctx.key() + "-rejecter", arg={**req, "id": awakeable_id})
    return await awakeable  # raises the TerminalError the rejecter sent, metadata included


@metadata_failures.handler(name="rejectAwakeable")
async def reject_awakeable(ctx: restate.ObjectContext, req: dict[str, Any]) -> None:
    _reject_awakeable(ctx, req["id"], req)


@metadata_failures.handler(name="awaitSignal")
async def await_signal(ctx: restate.ObjectContext, req: dict[str, Any]) -> str:
    ctx.object_send(reject_signal, key=ctx.key() + "-rejecter", arg={**req, "id": ctx.request().id})
    return await ctx.signal(SIGNAL, type_hint=str)


@metadata_failures.handler(name="rejectSignal")
async def reject_signal(ctx: restate.ObjectContext, req: dict[str, Any]) -> None:
    _reject_signal(ctx, req["id"], req)


metadata_workflow = restate.Workflow("FailureMetadataWorkflow")


@metadata_workflow.main()
async def run(ctx: restate.WorkflowContext) -> str:
    return await ctx.promise(PROMISE, type_hint=str).value()


@metadata_workflow.handler()
async def reject(ctx: restate.WorkflowSharedContext, req: dict[str, Any]) -> None:
    _reject_promise(ctx, req)


SERVICES = [metadata_failures, metadata_workflow]
