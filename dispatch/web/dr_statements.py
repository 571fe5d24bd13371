"""The tenants' monthly statements in the web view: the month's list, one tenant's
statement, and the CSV and PDF an accountant files.

The same functions as ``estate statements month`` (``dispatch.dr.billing``,
``dispatch.dr.statement_files``). An account bound to a facility gets its own statement
only; the estate's bill (what the statements add up to) is for the whole estate's
accounts. A month is computed from a month of quarter-hours per meter: bounded.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response

from dispatch.dr.billing import estate_statements
from dispatch.dr.events import DemandResponse
from dispatch.dr.statement_files import statement_csv, statement_pdf
from dispatch.dr.statements import EstateBill, Statement
from dispatch.registry.estate_store import planning_inputs
from dispatch.web.auth import Viewer, facility_scope
from dispatch.web.deps import DemandResponseDep

MONTH_PATTERN: Final = r"^\d{4}-(0[1-9]|1[0-2])$"
Month = Annotated[str, Path(pattern=MONTH_PATTERN, description="YYYY-MM")]
FacilityQuery = Annotated[str | None, Query(max_length=64, description=(
    "one tenant's statement only (an account of a facility gets its own anyway)"))]


def _statement(s: Statement) -> dict[str, Any]:
    return {"facility": s.facility, "name": s.name, "month": s.month, "currency": s.currency,
            "total": round(s.total, 2),
            "lines": [{"section": x.section, "label": x.label, "quantity": x.quantity,
                       "unit": x.unit, "rate": x.rate, "amount": round(x.amount, 2),
                       "source": x.source} for x in s.lines]}


def _bill(bill: EstateBill) -> dict[str, Any]:
    return {"energy": bill.energy, "demand_charge": bill.demand_charge,
            "capacity_penalty": bill.capacity_penalty, "water": bill.water, "gas": bill.gas,
            "shared_running": bill.shared_running, "demand_response": bill.demand_response,
            "peak_kw": bill.peak_kw, "total": round(bill.total, 2)}


def _month(dr: DemandResponse, month: str, scope: str | None
           ) -> tuple[list[Statement], EstateBill]:
    statements, bill = estate_statements(dr.registry, dr.metered, dr.estate_id, month)
    if scope is not None:
        statements = [s for s in statements if s.facility == scope]
        if not statements:
            raise HTTPException(404, f"no tenant {scope!r} in estate {dr.estate_id}")
    return statements, bill


def _file_name(month: str, scope: str | None, suffix: str) -> str:
    return f"statements-{month}{'' if scope is None else '-' + scope}.{suffix}"


router = APIRouter(prefix="/api/statements", tags=["statements"])


@router.get("/{month}")
def month_statements(month: Month, dr: DemandResponseDep, identity: Viewer,
                     facility: FacilityQuery = None) -> dict[str, Any]:
    """Every tenant's statement of the month (an account of a facility: its own), and for
    the whole estate's accounts the estate's bill from its meters."""
    scope = facility_scope(identity, facility)
    statements, bill = _month(dr, month, scope)
    whole = identity.user.facility is None
    return {"estate": dr.estate_id, "month": month, "facility": scope,
            "statements": [_statement(s) for s in statements],
            "tenants_total": round(sum(s.total for s in statements), 2),
            "estate_bill": _bill(bill) if whole and scope is None else None,
            "files": {kind: f"/api/statements/{month}/statements.{kind}"
                      + ("" if scope is None or not whole else f"?facility={scope}")
                      for kind in ("csv", "pdf")}}


@router.get("/{month}/statements.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def month_csv(month: Month, dr: DemandResponseDep, identity: Viewer,
              facility: FacilityQuery = None) -> Response:
    """The month's statements as CSV: one row per line, a total row per tenant."""
    scope = facility_scope(identity, facility)
    statements, _ = _month(dr, month, scope)
    return Response(statement_csv(statements), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename="
                             f"{_file_name(month, scope, 'csv')}"})


@router.get("/{month}/statements.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
def month_pdf(month: Month, dr: DemandResponseDep, identity: Viewer,
              facility: FacilityQuery = None) -> Response:
    """The month's statements as a printable PDF, a page (or more) per tenant."""
    scope = facility_scope(identity, facility)
    statements, _ = _month(dr, month, scope)
    name = planning_inputs(dr.registry, dr.estate_id).estate.name
    return Response(statement_pdf(statements, name), media_type="application/pdf",
                    headers={"Content-Disposition": "attachment; filename="
                             f"{_file_name(month, scope, 'pdf')}"})


@router.get("/{month}/{facility_id}")
def tenant_statement(month: Month, facility_id: Annotated[str, Path(max_length=64)],
                     dr: DemandResponseDep, identity: Viewer) -> dict[str, Any]:
    """One tenant's statement of the month (an account of another facility: 403)."""
    scope = facility_scope(identity, facility_id)
    statements, _ = _month(dr, month, scope)
    return _statement(statements[0])
