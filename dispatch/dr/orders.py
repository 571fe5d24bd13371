"""A demand-response order: the grid operator asks the estate to hold its import at most
``kw`` (``cap``) or to cut ``kw`` below its baseline (``cut``) in a window, under a
programme that pays for what is delivered and charges for what is not.

Orders come from an operator (``estate dr add``) or from the grid operator's VTN over
OpenADR (``dispatch.dr.ven``); either way they are checked here before anything stores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from estate.errors import DemandResponseError

ORDER_KINDS: Final = ("cap", "cut")
ORDER_SOURCES: Final = ("operator", "openadr")
ORDER_STATUSES: Final = ("received", "split", "settled", "cancelled")
OPT_STATES: Final = ("pending", "in", "out")
MAX_WINDOW: Final = timedelta(hours=24)
"""The longest window an order may have: programmes curtail for hours, never for days, so
a longer one is a typing error (or a hostile VTN), refused before it costs a plan."""
MAX_KW: Final = 1_000_000.0
"""A gigawatt: beyond any estate's grid connection; larger figures are refused."""
MAX_RATE: Final = 1_000.0
"""Currency per kWh beyond which a payment or penalty rate is a typing error."""


@dataclass(frozen=True, slots=True)
class Programme:
    """The programme's money rules: ``payment_per_kwh`` for each kWh delivered, up to what
    was requested; ``penalty_per_kwh`` for each kWh short of it."""

    name: str = "demand response"
    payment_per_kwh: float = 0.0
    penalty_per_kwh: float = 0.0
    currency: str = "EUR"


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """An order as entered or received, before the registry gives it an id."""

    kind: str
    kw: float
    start: datetime
    end: datetime
    programme: Programme
    source: str = "operator"
    external_id: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    """An order in the registry, with what the operator decided (``opt``) and how far it
    got (``status``: received, split among the tenants, settled, or cancelled)."""

    id: int
    estate_id: str
    kind: str
    kw: float
    start: datetime
    end: datetime
    programme: Programme
    source: str
    external_id: str | None
    status: str
    opt: str
    note: str
    created_at: datetime
    created_by: str

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def describe(self) -> str:
        what = (f"import at most {self.kw:,.0f} kW" if self.kind == "cap"
                else f"cut {self.kw:,.0f} kW below baseline")
        return (f"order {self.id} ({self.source}): {what} from {self.start.isoformat()} "
                f"to {self.end.isoformat()}")


def _finite(value: float, what: str, low: float, high: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        raise DemandResponseError(f"{what} must be a number from {low:g} to {high:g}, "
                                  f"not {value!r}")


def check_draft(draft: OrderDraft, *, step_minutes: int = 15) -> OrderDraft:
    """The draft if it can be planned; ``DemandResponseError`` saying what is wrong."""
    if draft.kind not in ORDER_KINDS:
        raise DemandResponseError(f"order kind must be one of {', '.join(ORDER_KINDS)}, "
                                  f"not {draft.kind[:40]!r}")
    if draft.source not in ORDER_SOURCES:
        raise DemandResponseError(f"unknown order source {draft.source[:40]!r}")
    _finite(draft.kw, "the order's kW", 0.0 if draft.kind == "cap" else 1e-9, MAX_KW)
    _finite(draft.programme.payment_per_kwh, "the payment per kWh", 0.0, MAX_RATE)
    _finite(draft.programme.penalty_per_kwh, "the penalty per kWh", 0.0, MAX_RATE)
    for moment, what in ((draft.start, "start"), (draft.end, "end")):
        if moment.tzinfo is None:
            raise DemandResponseError(f"the order's {what} needs a time zone")
        if int(moment.timestamp()) % (step_minutes * 60):
            raise DemandResponseError(f"the order's {what} {moment.isoformat()} is not on a "
                                      f"{step_minutes}-minute step")
    if not draft.start < draft.end <= draft.start + MAX_WINDOW:
        raise DemandResponseError("the order's window must end after it starts and last at "
                                  f"most {MAX_WINDOW}")
    return draft
