"""End to end: a declined payment unwinds the booking in reverse order, once, even across a crash."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from examples._harness import DeployFn, Deployment
from pyrestate.testing import json_of


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("sagas")


def booking(amount: int) -> dict[str, Any]:
    return {
        "flights": {"flightId": "12345", "passengerName": "John Doe"},
        "car": {"pickupLocation": "Airport", "rentalDate": "2024-12-16"},
        "paymentInfo": {"cardNumber": "4111111111111111", "amount": amount},
    }


def ids(lines: list[str], prefix: str) -> list[str]:
    return [line.split()[1] for line in lines if line.startswith(prefix)]


def test_successful_booking_confirms_everything(dep: Deployment) -> None:
    before = len(dep.effects.lines())
    result = json_of(dep.ingress.call("BookingWorkflow", "run", booking(500), key=f"trip-{uuid.uuid4()}"))
    lines = dep.effects.lines()[before:]
    assert lines == [
        f"Flight {result['flightBookingId']} reserved",
        f"Car {result['carBookingId']} reserved",
        f"Payment {result['paymentId']} charged",
        f"Flight {result['flightBookingId']} confirmed",
        f"Car {result['carBookingId']} confirmed",
    ]


@pytest.mark.parametrize("crash", [None, "cancel-car"])
def test_declined_payment_runs_compensations_in_reverse_exactly_once(
    dep: Deployment, crash: str | None
) -> None:
    before = len(dep.effects.lines())
    trip = f"trip123-{uuid.uuid4().hex[:8]}"
    if crash:
        dep.arm_crash(crash)
    sent = dep.ingress.send_json("BookingWorkflow", "run", booking(1500), key=trip)
    if crash:
        dep.restart_after_crash()

    r = dep.ingress.workflow_attach("BookingWorkflow", trip)
    assert r.status_code == 500, r.text
    assert r.json()["message"] == "This payment could not be accepted!"

    lines = dep.effects.lines()[before:]
    flight, car, payment = ids(lines, "Flight")[0], ids(lines, "Car")[0], ids(lines, "Payment")[0]
    assert lines == [
        f"Flight {flight} reserved",
        f"Car {car} reserved",
        "This payment should never be accepted! Aborting booking.",
        f"Payment {payment} refunded",
        f"Car {car} cancelled",
        f"Flight {flight} cancelled",
    ]
    # The workflow ran once per id: submitting it again does not run anything.
    again = dep.ingress.send_json("BookingWorkflow", "run", booking(1500), key=trip)
    assert again == {"invocationId": sent["invocationId"], "status": "PreviouslyAccepted"}
    assert dep.effects.lines()[before:] == lines
