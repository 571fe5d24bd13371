"""The level a store starts the plan at, from telemetry: pure, numbers in and out.

The rolling plan needs each tank's (and battery's) content at the start of its horizon.
``store_level`` picks it from the newest ``state_of_charge`` reading (percent full) of the
store's level meter (``PumpTankSpec.level_meter``, ``ThermalStorageSpec.level_meter``; a
battery's own device), and says why when it cannot: no reading, or one too old, or one
outside 0-100 %, assumes the middle of the plan's range (as the plan did before levels
were measured); a level outside the range the plan may use is brought to its edge, with a
note. docs/planning.md, *Tank levels*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# A level an hour old is still the best guess for a tank that takes hours to fill; older,
# the pumps and users may have moved it anywhere in its range.
MAX_AGE_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class StoreLevel:
    value: float  # in the store's unit (m³ of water, kWh of cooling or charge)
    measured: bool
    note: str  # empty when the measured level was used as it was


def store_level(label: str, minimum: float, maximum: float, capacity: float,
                percent: float | None, age_s: float | None, *,
                max_age_s: float = MAX_AGE_S, unit: str = "m³") -> StoreLevel:
    """The starting level of a store of ``capacity`` whose plan keeps it within
    ``[minimum, maximum]``, from a reading of ``percent`` full taken ``age_s`` ago."""
    middle = (minimum + maximum) / 2
    if percent is None or age_s is None or not math.isfinite(percent):
        return StoreLevel(middle, False, f"{label}: level not measured; half full assumed")
    if age_s > max_age_s:
        return StoreLevel(middle, False, f"{label}: no level in the last "
                                         f"{max_age_s / 60:.0f} minutes; half full assumed")
    if not 0.0 <= percent <= 100.0:
        return StoreLevel(middle, False, f"{label}: implausible level {percent:g} %; half "
                                         "full assumed")
    value = capacity * percent / 100
    if value < minimum:
        return StoreLevel(minimum, True, f"{label}: measured {value:,.0f} {unit}, below the "
                                         f"plan's minimum; {minimum:,.0f} {unit} assumed")
    if value > maximum:
        return StoreLevel(maximum, True, f"{label}: measured {value:,.0f} {unit}, above the "
                                         f"plan's maximum; {maximum:,.0f} {unit} assumed")
    return StoreLevel(value, True, "")
