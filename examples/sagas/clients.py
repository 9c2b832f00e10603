"""Stand-ins for the flight, car rental and payment providers the booking talks to.

Reservations are two-phase (reserve, then confirm or cancel); the payment is one-shot and keyed by a
payment id, so a refund with the same id undoes it. Each call is idempotent, as compensations must be.
"""

from __future__ import annotations

import uuid
from typing import Any

from examples.effects import maybe_crash, record
from pyrestate.sdk import TerminalError

CARD_LIMIT = 1000


def reserve_flight(flight: dict[str, Any]) -> str:
    booking_id = str(uuid.uuid4())
    record(f"Flight {booking_id} reserved")
    return booking_id


def confirm_flight(booking_id: str) -> None:
    record(f"Flight {booking_id} confirmed")


def cancel_flight(booking_id: str) -> None:
    maybe_crash("cancel-flight")
    record(f"Flight {booking_id} cancelled")


def reserve_car(car: dict[str, Any]) -> str:
    booking_id = str(uuid.uuid4())
    record(f"Car {booking_id} reserved")
    return booking_id


def confirm_car(booking_id: str) -> None:
    record(f"Car {booking_id} confirmed")


def cancel_car(booking_id: str) -> None:
    maybe_crash("cancel-car")
    record(f"Car {booking_id} cancelled")


def charge(payment_info: dict[str, Any], payment_id: str) -> None:
    if payment_info["amount"] > CARD_LIMIT:
        record("This payment should never be accepted! Aborting booking.")
        raise TerminalError("This payment could not be accepted!")
    record(f"Payment {payment_id} charged")


def refund(payment_id: str) -> None:
    record(f"Payment {payment_id} refunded")
