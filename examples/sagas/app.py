"""Sagas: every step registers its undo action; a terminal error runs them in reverse order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyrestate.sdk as restate
from examples.sagas import clients
from pyrestate.sdk import TerminalError, WorkflowContext

booking_workflow = restate.Workflow("BookingWorkflow")


@booking_workflow.main()
async def run(ctx: WorkflowContext, req: dict[str, Any]) -> dict[str, str]:
    compensations: list[tuple[str, Callable[[], None]]] = []
    try:
        # Two-phase commit: the undo action is registered once the reservation exists.
        flight_id = await ctx.run("reserve flight", lambda: clients.reserve_flight(req["flights"]))
        compensations.append(("cancel flight", lambda: clients.cancel_flight(flight_id)))

        car_id = await ctx.run("reserve car", lambda: clients.reserve_car(req["car"]))
        compensations.append(("cancel car", lambda: clients.cancel_car(car_id)))

        # Idempotency key: the refund is registered before paying, with the id the payment will carry,
        # so it is also right when the charge's outcome is unknown.
        payment_id = str(ctx.uuid())
        compensations.append(("refund", lambda: clients.refund(payment_id)))
        await ctx.run("pay", lambda: clients.charge(req["paymentInfo"], payment_id))

        await ctx.run("confirm flight", lambda: clients.confirm_flight(flight_id))
        await ctx.run("confirm car", lambda: clients.confirm_car(car_id))
        return {"flightBookingId": flight_id, "carBookingId": car_id, "paymentId": payment_id}
    except TerminalError:
        # Undo in reverse order; each compensation is journaled, so it runs once even across crashes.
        for name, compensation in reversed(compensations):
            await ctx.run(name, compensation)
        raise


app = restate.app([booking_workflow])
