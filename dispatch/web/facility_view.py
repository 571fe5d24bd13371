"""What the facility page shows of the newest plan: the setpoints of the facility's own
assets per step, beside its forecast and measured demand (``GET /api/forecast``). A
tenant's account sees its own facility's; plans as a whole stay the estate's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from dispatch.registry.plan_views import get_plan, list_plans
from dispatch.web.auth import Viewer, facility_scope
from dispatch.web.deps import RegistryDep, Spec
from estate.topics import IDENTIFIER_PATTERN

FacilityId = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$")]

router = APIRouter(tags=["plans"])


@router.get("/api/facilities/{facility_id}/plan")
def facility_plan(facility_id: FacilityId, spec: Spec, registry: RegistryDep,
                  identity: Viewer) -> dict[str, Any]:
    """The newest plan's setpoints (kW per step) for the facility's own assets; ``plan``
    is null before the first plan, ``assets`` empty for a facility without any."""
    facility_scope(identity, facility_id)
    if facility_id not in {f.id for f in spec.facilities}:
        raise HTTPException(404, f"no facility {facility_id!r} in estate {spec.id!r}")
    own = {a.id: a for a in spec.assets if a.facility == facility_id}
    newest = list_plans(registry, spec.id, 1)
    if not newest:
        return {"facility": facility_id, "plan": None, "status": None, "times": [],
                "assets": []}
    detail = get_plan(registry, newest[0]["id"], spec.id)
    return {"facility": facility_id, "plan": detail["id"], "status": detail["status"],
            "times": detail["times"],
            "assets": [{"id": asset, "name": own[asset].name or asset,
                        "kind": series.get("kind"), "values": series["values"]}
                       for asset, series in detail["setpoints"].items() if asset in own]}
