"""The doors of the workshop live now: its tickets scanned at two gates in the last hour, each
ticket at one gate only (the fraud rule for several devices keeps its one demo case), and the
scans that let nobody in: a flaky connection, tickets shown twice and codes that are no ticket,
most of them at the south gate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from app.services.demo_data.listings import LIVE_ID

TICKETS = 40
GATES = ("gate-north", "gate-south")
# (gate, error type, minutes after the doors opened, what was scanned)
FAILURES = (
    ("gate-south", "network", 12, "ticket"), ("gate-south", "network", 13, "ticket"), ("gate-south", "network", 31, "ticket"),
    ("gate-south", "already_used", 20, "ticket"), ("gate-south", "invalid_code", 25, "code"),
    ("gate-south", "invalid_code", 41, "code"), ("gate-north", "already_used", 35, "ticket"),
    ("gate-north", "invalid_code", 44, "code"),
)  # fmt: skip
DOORS_OPEN = timedelta(minutes=55)  # before the seeding's now


def ticket_id(n: int) -> str:
    return f"LIVE-{n:03d}"


def generate_door_scans(*, now: datetime, seed: int = 7) -> Iterator[dict[str, Any]]:
    """ticket.scanned for each ticket, then the ticket.scan_failed ones."""
    opened = now.replace(microsecond=0) - DOORS_OPEN
    prefix = f"demo-{seed}-door"
    for n in range(TICKETS):
        properties = {"ticketId": ticket_id(n), "code": f"QR-{ticket_id(n)}", "orderId": f"live-order-{n // 2}",
                      "deviceId": GATES[n % 2], "listingId": LIVE_ID}  # fmt: skip
        yield {"type": "ticket.scanned", "event_id": f"{prefix}-{n}", "occurred_at": opened + timedelta(minutes=n), "properties": properties}
    for n, (gate, error, minute, scanned) in enumerate(FAILURES):
        if scanned == "code":
            what: dict[str, Any] = {"code": f"QR-UNKNOWN-{n}", "message": "not a ticket for this event"}
        else:
            what = {"ticketId": ticket_id(minute - 1), "code": f"QR-{ticket_id(minute - 1)}", "orderId": f"live-order-{(minute - 1) // 2}"}
        properties = {"errorType": error, "deviceId": gate, "listingId": LIVE_ID, **what}
        yield {"type": "ticket.scan_failed", "event_id": f"{prefix}-failed-{n}", "occurred_at": opened + timedelta(minutes=minute, seconds=30),
               "properties": properties}  # fmt: skip
