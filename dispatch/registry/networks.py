"""The estate's networks in the registry (``networks``, ``network_nodes``), loaded from the
estate description with the rest of it: one row per meter of a network, naming the meter
that feeds it. A network the file no longer lists is deleted (it is configuration; alarms
name meters, not networks), a changed one has its nodes replaced.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dispatch.registry.control_room import Network, NetworkNode
from estate.model import EstateSpec


def load_networks(session: Session, spec: EstateSpec) -> dict[str, int]:
    """Upsert the networks of ``spec``; counts of added, updated, unchanged, deleted."""
    counts = {"added": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    existing = {n.id: n for n in session.scalars(select(Network).where(
        Network.estate_id == spec.id))}
    for tree, net in zip(spec.network_trees(), spec.networks, strict=True):
        values = {"utility": net.utility, "name": net.name, "tolerance": net.tolerance,
                  "tolerance_abs": net.tolerance_abs}
        wanted = []
        for meter in tree.meters:
            node = tree.nodes.get(meter)
            parent = tree.parent.get(meter)
            facility, meter_id = meter.split("/", 1)
            pf, pm = parent.split("/", 1) if parent else (None, None)
            wanted.append((facility, meter_id, pf, pm, node.losses if node else 0.0,
                           node.tolerance if node else None,
                           node.tolerance_abs if node else None,
                           node.balance if node else True))
        row = existing.pop(net.id, None)
        if row is None:
            session.add(Network(estate_id=spec.id, id=net.id, **values))
            counts["added"] += 1
            have: list[tuple[object, ...]] = []
        else:
            changed = any(getattr(row, k) != v for k, v in values.items())
            for k, v in values.items():
                setattr(row, k, v)
            have = sorted((n.facility_id, n.meter_id, n.parent_facility_id, n.parent_meter_id,
                           n.losses, n.tolerance, n.tolerance_abs, n.balance)
                          for n in session.scalars(select(NetworkNode).where(
                              NetworkNode.estate_id == spec.id,
                              NetworkNode.network_id == net.id)))
            counts["updated" if changed or have != sorted(wanted) else "unchanged"] += 1
        session.flush()
        if have != sorted(wanted):
            session.execute(delete(NetworkNode).where(NetworkNode.estate_id == spec.id,
                                                      NetworkNode.network_id == net.id))
            session.add_all(NetworkNode(
                estate_id=spec.id, network_id=net.id, facility_id=f, meter_id=m,
                parent_facility_id=pf, parent_meter_id=pm, losses=losses, tolerance=tol,
                tolerance_abs=tol_abs, balance=balance)
                for f, m, pf, pm, losses, tol, tol_abs, balance in wanted)
    for row in existing.values():
        session.delete(row)
        counts["deleted"] += 1
    session.flush()
    return counts


def network_links(session: Session, estate_id: str) -> list[tuple[str, str, str | None]]:
    """(network, meter, the meter feeding it) of every node, as ``facility/meter``."""
    return [(n.network_id, f"{n.facility_id}/{n.meter_id}",
             f"{n.parent_facility_id}/{n.parent_meter_id}" if n.parent_meter_id else None)
            for n in session.scalars(select(NetworkNode).where(
                NetworkNode.estate_id == estate_id).order_by(
                NetworkNode.network_id, NetworkNode.facility_id, NetworkNode.meter_id))]
