"""A large synthetic estate for load tests and benchmarks: ``synthetic_estate(10_000, seed)``.

The tenants are drawn from a mix of industries with their own shifts and meter sets (a
textile mill on two shifts, a bakery working through the night, a 24/7 cold store, a day-
shift metal shop...), and the estate's shared services own the PV, the batteries, the
gensets, the wells and the tanks. The same ``meters`` and ``seed`` always give the same
estate, with exactly ``meters`` meters.

Where the shared services have room for them (from a few hundred meters up), the estate
has its networks too: feeders of ``FEEDER_SIZE`` tenant incomers each, a water main above
the distribution meters, each above its share of the tenants' water meters, and gas
stations of ``FEEDER_SIZE`` tenants' gas meters each. Each feeder and each gas station is a
network of its own, without a meter above them: an estate of thousands of meters would
otherwise have a grid incomer reading beyond the contract's range for power.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.faults import estate_faults
from edge.settings import EdgeSettings
from edge.simulator import EstateSimulator
from estate.model import EstateSpec, load_estate


@dataclass(frozen=True, slots=True)
class _Template:
    sector: str
    shift_start: int
    shift_end: int
    weekend: bool
    # (meter id, kind, nominal low, nominal high, base share)
    meters: tuple[tuple[str, str, float, float, float], ...]


TEMPLATES: tuple[_Template, ...] = (
    _Template("textile mill", 6, 22, False, (
        ("main", "electricity", 300, 900, 0.15), ("looms", "electricity", 150, 450, 0.05),
        ("hvac", "hvac", 40, 160, 0.2), ("water", "water", 8, 30, 0.2),
        ("gas", "gas", 40, 120, 0.1), ("dyehouse-temp", "temperature", 28, 34, 0.7))),
    _Template("food processing", 0, 24, True, (
        ("main", "electricity", 300, 800, 0.6), ("chillers", "hvac", 120, 320, 0.7),
        ("water", "water", 6, 20, 0.3), ("coldroom-temp", "temperature", 2, 5, 1.0))),
    _Template("metal fabrication", 7, 17, False, (
        ("main", "electricity", 400, 1200, 0.08), ("compressors", "electricity", 80, 220, 0.2),
        ("gas", "gas", 30, 90, 0.1), ("hvac", "hvac", 30, 90, 0.2))),
    _Template("bakery", 22, 6, True, (
        ("main", "electricity", 80, 250, 0.1), ("ovens", "gas", 20, 60, 0.05),
        ("water", "water", 1, 4, 0.1))),
    _Template("logistics warehouse", 6, 20, True, (
        ("main", "electricity", 60, 200, 0.3), ("hvac", "hvac", 40, 150, 0.3),
        ("hall-temp", "temperature", 16, 20, 0.6))),
    _Template("plastics moulding", 0, 24, False, (
        ("main", "electricity", 250, 700, 0.2), ("presses", "electricity", 150, 400, 0.1),
        ("cooling", "water", 5, 15, 0.3), ("hvac", "hvac", 20, 60, 0.3))),
)
# Relative frequency of each template among the tenants: small workshops outnumber mills.
WEIGHTS = np.array([0.15, 0.15, 0.2, 0.15, 0.2, 0.15])

# The shared services' meters, repeated in blocks until their share of the estate is met.
SHARED_BLOCK: tuple[tuple[str, str, float, float, float], ...] = (
    ("pv", "pv", 200, 1500, 0.0), ("battery", "battery", 250, 1000, 0.0),
    ("genset", "genset", 300, 800, 0.0), ("well-pump", "pump", 20, 60, 0.4),
    ("tank", "tank", 20, 80, 0.4), ("network", "water", 20, 60, 0.4),
    ("ambient", "temperature", 22, 22, 0.8),
)
SHARED_SHARE = 0.02  # of all meters: a few estate assets per hundred tenant meters
# Tenant incomers per feeder: a 400 V feeder serves a few dozen small workshops, and a
# feeder outage then silences a group the size operators fear.
FEEDER_SIZE = 40


def synthetic_estate(meters: int, seed: int, estate_id: str = "synthetic",
                     timezone: str = "Europe/Athens") -> EstateSpec:
    """An estate of exactly ``meters`` meters, the same for the same arguments."""
    if meters < 1:
        raise ValueError("an estate needs at least one meter")
    rng = np.random.default_rng([seed, meters])
    shared_count = min(meters, max(1, round(meters * SHARED_SHARE)))
    facilities: list[dict[str, Any]] = []
    left = meters - shared_count
    number = 0
    while left > 0:
        number += 1
        template = TEMPLATES[int(rng.choice(len(TEMPLATES), p=WEIGHTS))]
        rows = []
        # Bigger tenants have several lines of the same process: a suffix per copy.
        copies = int(rng.integers(1, 4))
        for copy in range(copies):
            for meter_id, kind, low, high, base in template.meters:
                if left == 0:
                    break
                rows.append(_meter(f"{meter_id}-{copy + 1}" if copy else meter_id, kind,
                                   low, high, base, rng, incomer=meter_id == "main"))
                left -= 1
        facilities.append({
            "id": f"t{number:04d}", "name": f"Tenant {number} ({template.sector})",
            "sector": template.sector, "shift_start": template.shift_start,
            "shift_end": template.shift_end, "weekend": template.weekend, "meters": rows})
    capacity = sum(m["nominal"] for f in facilities for m in f["meters"]
                   if m["kind"] == "electricity" and m.get("incomer"))
    shared, networks = _shared(shared_count, rng, facilities)
    return EstateSpec.model_validate({
        "id": estate_id, "name": f"Synthetic estate of {meters} meters", "timezone": timezone,
        "contracted_capacity_kw": max(100.0, round(capacity * 0.8)),
        "facilities": [shared, *facilities], "networks": networks})


def _tenant_meters(facilities: list[dict[str, Any]], test: Any) -> list[str]:
    return [f"{f['id']}/{m['id']}" for f in facilities for m in f["meters"] if test(m)]


def _shared(count: int, rng: np.random.Generator, tenants: list[dict[str, Any]],
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The shared services' meters and, if they have room, the estate's networks."""
    incomers = _tenant_meters(tenants, lambda m: m["kind"] == "electricity" and m.get("incomer"))
    waters = _tenant_meters(tenants, lambda m: m["kind"] == "water")
    gases = _tenant_meters(tenants, lambda m: m["kind"] == "gas")
    feeders = -(-len(incomers) // FEEDER_SIZE)
    stations = -(-len(gases) // FEEDER_SIZE)
    # The network meters come out of the shared services' count; the rest is as before.
    network_rows = feeders + stations + 1
    rows: list[dict[str, Any]] = []
    with_networks = bool(incomers) and count >= network_rows + 2 * len(SHARED_BLOCK)
    if with_networks:
        rows += [_meter(f"feeder-{k + 1}", "electricity", 500, 500, 1.0, rng)
                 for k in range(feeders)]
        rows += [_meter(f"gas-station-{k + 1}", "gas", 500, 500, 1.0, rng)
                 for k in range(stations)]
        rows.append(_meter("water-main", "water", 500, 500, 1.0, rng))
    for k in range(count - len(rows)):
        meter_id, kind, low, high, base = SHARED_BLOCK[k % len(SHARED_BLOCK)]
        block = k // len(SHARED_BLOCK)
        rows.append(_meter(f"{meter_id}-{block + 1}", kind, low, high, base, rng))
    distribution = [f"utilities/{m['id']}" for m in rows if m["id"].startswith("network-")]
    networks = (_networks(distribution, incomers, waters, gases) if with_networks else [])
    shared = {"id": "utilities", "name": "Estate shared services",
              "sector": "shared services", "shift_start": 0, "shift_end": 24, "weekend": True,
              "meters": rows}
    return shared, networks


def _networks(distribution: list[str], incomers: list[str], waters: list[str],
              gases: list[str]) -> list[dict[str, Any]]:
    def chunks(meters: list[str]) -> list[list[str]]:
        return [meters[k:k + FEEDER_SIZE] for k in range(0, len(meters), FEEDER_SIZE)]

    networks: list[dict[str, Any]] = [
        {"id": f"power-{k + 1}", "utility": "electricity", "tolerance": 0.03,
         "tolerance_abs": 5, "nodes": [{"meter": f"utilities/feeder-{k + 1}",
                                        "losses": 0.01, "feeds": chunk}]}
        for k, chunk in enumerate(chunks(incomers))]
    networks += [
        {"id": f"gas-{k + 1}", "utility": "gas", "tolerance": 0.04, "tolerance_abs": 1,
         "nodes": [{"meter": f"utilities/gas-station-{k + 1}", "losses": 0.005,
                    "feeds": chunk}]}
        for k, chunk in enumerate(chunks(gases))]
    # Each distribution meter (``network-k`` of the shared block) feeds a slice of the
    # tenants' water meters; the water main feeds them all.
    water = [{"meter": "utilities/water-main", "losses": 0.02, "feeds": distribution}]
    size = -(-len(waters) // len(distribution))
    water += [{"meter": meter, "losses": 0.02, "feeds": waters[k * size:(k + 1) * size]}
              for k, meter in enumerate(distribution) if waters[k * size:(k + 1) * size]]
    networks.append({"id": "water", "utility": "water", "tolerance": 0.05,
                     "tolerance_abs": 0.5, "nodes": water})
    return networks


def _meter(meter_id: str, kind: str, low: float, high: float, base: float,
           rng: np.random.Generator, incomer: bool = False) -> dict[str, Any]:
    nominal = round(float(rng.uniform(low, high)), 1)
    row: dict[str, Any] = {"id": meter_id, "kind": kind, "nominal": nominal,
                           "base_share": base}
    if incomer:
        row["incomer"] = True
    return row


def simulator_for(settings: EdgeSettings) -> EstateSimulator:
    """The simulation the settings ask for: a synthetic estate of ``meters`` meters or the
    estate file, with the file's faults and the injected ones."""
    spec = (synthetic_estate(settings.meters, settings.seed) if settings.meters
            else load_estate(settings.estate_file))
    return EstateSimulator(spec, settings.seed, faults=estate_faults(spec, settings.faults))
