"""The command and audit log's API: the estate's newest commands with their state, the
device's answer and audit trail, and the newest decisions on plans (who approved or
rejected what). The whole estate's: not for an account bound to a facility."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query

from dispatch.registry.command_log import recent_commands, recent_decisions
from dispatch.web.auth import Viewer, whole_estate
from dispatch.web.deps import RegistryDep, Spec
from estate.commands import CommandState

# A page's worth: the log is read newest first, and a shift's commands fit in it.
MAX_LIST: Final = 500

router = APIRouter(prefix="/api/commands", tags=["commands"])


@router.get("")
def command_log(spec: Spec, registry: RegistryDep, identity: Viewer,
                limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
                status: CommandState | None = None) -> dict[str, Any]:
    """The newest commands (of one state, with ``status``), each with the device's answer
    (``status``, ``reason``, ``detail``) and its audit trail, and the newest approvals and
    rejections of plans with who decided and why."""
    whole_estate(identity, "the command and audit log")
    return {"estate": spec.id,
            "commands": recent_commands(registry, spec.id, limit,
                                                status and status.value),
            "decisions": recent_decisions(registry, spec.id, min(limit, 100))}
