"""The estate description: facilities (tenants) and their meters, loaded from YAML.

The same file feeds the simulator, the scheduler's checks and the web view (and, later,
the registry database). Validation happens here, when the file loads, so a typo in a meter
kind or a duplicated identifier stops start-up with a message that names it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from estate.alarm_rules import AlarmRuleSpec
from estate.assets import AssetSpec, CapacityLimitSpec, TariffSpec, check_references
from estate.crews import CrewSpec, check_crews
from estate.errors import ConfigError, TopicError
from estate.networks import NetworkSpec, NetworkTree, check_networks, meter_ref
from estate.rule_binding import MeterInfo, RuleBook, bind_rules, check_alarm_rules
from estate.topics import DeviceId
from estate.topics import validate_identifier as _validate
from estate.units import CHANNELS, QUANTITIES

MeterKind = Literal["electricity", "water", "gas", "temperature", "hvac", "pv", "battery",
                    "genset", "pump", "tank"]
FaultKind = Literal["offline", "leak", "spike", "stuck", "counter_reset", "clock_skew",
                   "outage"]

_ELECTRICAL = (("power", ""), ("energy_import", ""), ("voltage", "l1"), ("current", "l1"),
               ("power_factor", ""))

# What each kind of meter reports, with the channel of each quantity ("" for none).
# Generating and discharging report negative power and count ``energy_export``.
MEASURES: dict[str, tuple[tuple[str, str], ...]] = {
    "electricity": _ELECTRICAL,
    "water": (("water_flow", ""), ("water_volume", ""), ("pressure", "")),
    "gas": (("gas_flow", ""), ("gas_volume", "")),
    "temperature": (("temperature", ""),),
    "hvac": _ELECTRICAL,
    "pv": (("power", ""), ("energy_export", "")),
    "battery": (("power", ""), ("energy_import", ""), ("energy_export", ""),
                ("state_of_charge", "")),
    "genset": (("power", ""), ("energy_export", "")),
    "pump": (("water_flow", ""), ("water_volume", ""), ("power", ""), ("energy_import", "")),
    "tank": (("tank_level", ""), ("state_of_charge", "")),
}

SAMPLE_ESTATE = Path(__file__).with_name("samples") / "sample_estate.yaml"


def validate_identifier(value: str, what: str) -> str:
    """The topic rule for identifiers, as a ``ValueError`` pydantic reports with the field."""
    try:
        return _validate(value, what)
    except TopicError as exc:
        raise ValueError(exc.detail) from exc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Strict):
    """A fault the simulator injects into one meter from ``start`` until ``end`` (or for good).

    ``magnitude`` is the extra flow of a leak (m3/h), the factor of a spike (default 10) or
    the clock skew in seconds; the other kinds ignore it. An ``outage`` cuts the supply
    through the meter: it and every meter below it in its networks draw nothing
    (``edge.faults``).
    """

    kind: FaultKind
    start: AwareDatetime
    end: AwareDatetime | None = None
    magnitude: float = 0.0


class MeterSpec(_Strict):
    """One meter: its kind and the shape of its simulated profile."""

    id: str
    kind: MeterKind
    name: str = ""
    # Typical value of the meter's main flow (kW, m3/h or degrees Celsius) while working.
    nominal: float = Field(gt=-100, le=100_000)
    # Share of ``nominal`` drawn outside working hours (standby, base load).
    base_share: float = Field(0.2, ge=0, le=1)
    # An electricity meter on the facility's grid incomer: the sum of a facility's incomers
    # is its demand (sub-meters such as a loom hall are inside it and not added again).
    incomer: bool = False
    # Storage of a battery (kWh) or a tank (m3); 0 sizes it from ``nominal``.
    capacity: float = Field(0.0, ge=0)
    faults: list[FaultSpec] = []
    # Channels this meter reports beyond those the contract gives each quantity
    # (docs/contract.md section 3.1), by quantity: {temperature: [bath-1, bath-2]}.
    channels: dict[str, list[str]] = {}

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return validate_identifier(value, "meter id")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for quantity, channels in value.items():
            if quantity not in QUANTITIES:
                raise ValueError(f"{quantity!r} is not a quantity of the contract")
            for channel in channels:
                if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", channel):
                    raise ValueError(f"channel {channel!r} of {quantity} is not 1-64 of "
                                     "[A-Za-z0-9_-]")
        return value

    def extra_fields(self) -> frozenset[str]:
        """The ``quantity.channel`` names of ``channels`` that the contract lacks."""
        return frozenset(f"{quantity}.{channel}" for quantity, channels in self.channels.items()
                         for channel in channels if channel not in CHANNELS[quantity])


class FacilitySpec(_Strict):
    """A tenant of the estate: a factory with its working hours and meters."""

    id: str
    name: str
    sector: str = ""
    # Working hours on weekdays as [start, end) local hours; weekends run at base load
    # unless ``weekend`` is true.
    shift_start: int = Field(6, ge=0, le=23)
    shift_end: int = Field(22, ge=1, le=24)
    weekend: bool = False
    # Where the facility stands on the estate's site plan, in metres east and north of a
    # reference point: how far a crew has to travel to it.
    position: tuple[float, float] = (0.0, 0.0)
    meters: list[MeterSpec]

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return validate_identifier(value, "facility id")


class EstateSpec(_Strict):
    """An industrial estate: one grid connection, its tenants and their meters."""

    id: str
    name: str
    timezone: str = "UTC"
    contracted_capacity_kw: float = Field(gt=0)
    facilities: list[FacilitySpec]
    # Flexible assets, tariff versions and import limits (estate.assets).
    assets: list[AssetSpec] = []
    tariffs: list[TariffSpec] = []
    capacity_limits: list[CapacityLimitSpec] = []
    # Which meters feed which, per utility (estate.networks).
    networks: list[NetworkSpec] = []
    # Alarm rules added to and overriding the defaults (estate.alarm_rules).
    alarm_rules: list[AlarmRuleSpec] = []
    # Field crews, their skills and shifts (estate.crews).
    crews: list[CrewSpec] = []

    _trees: list[NetworkTree] = PrivateAttr(default_factory=list)

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return validate_identifier(value, "estate id")

    @model_validator(mode="after")
    def _references(self) -> EstateSpec:
        check_references([f.id for f in self.facilities], self.assets, self.tariffs,
                         self.capacity_limits)
        check_crews(self.crews, {f.id for f in self.facilities})
        kinds = self.meter_kinds()
        if len(kinds) == sum(len(f.meters) for f in self.facilities):
            # With a duplicated facility or meter the references are ambiguous: the
            # networks are checked once ``load_estate`` has named the duplicate.
            self._trees = check_networks(self.networks, kinds)
            for asset in self.assets:
                level = getattr(asset, "level_meter", None)
                if level is not None and kinds.get(level) != "tank":
                    raise ValueError(f"asset {asset.id!r}: level_meter {level!r} is not a "
                                     "tank meter of the estate")
            check_alarm_rules(self.alarm_rules, self.meter_infos(),
                              [f.id for f in self.facilities], [n.id for n in self.networks])
        return self

    def meter_infos(self) -> dict[str, MeterInfo]:
        """Every meter as ``facility/meter`` with what alarm rules need to know of it."""
        return {f"{f.id}/{m.id}": MeterInfo(f.id, m.id, m.kind, frozenset(MEASURES[m.kind]))
                for f in self.facilities for m in f.meters}

    def crew_position(self, crew: CrewSpec) -> tuple[float, float]:
        """Where a crew starts from: its position, its base facility's, or the origin."""
        if crew.position is not None:
            return crew.position
        for facility in self.facilities:
            if facility.id == crew.base:
                return facility.position
        return (0.0, 0.0)

    def rule_book(self) -> RuleBook:
        """The default rules and the file's, bound to every meter, network node and
        capacity limit (``estate.rule_binding.bind_rules``)."""
        limited = {c.facility for c in self.capacity_limits if c.facility is not None}
        return bind_rules(self.meter_infos().values(), self.alarm_rules, self._trees, limited)

    def meter_kinds(self) -> dict[str, str]:
        """Every meter as ``facility/meter`` with its kind."""
        return {meter_ref(f.id, m.id): m.kind for f in self.facilities for m in f.meters}

    def network_trees(self) -> list[NetworkTree]:
        """The networks, checked and built into trees when the description loaded."""
        return list(self._trees)

    def devices(self) -> list[tuple[DeviceId, MeterSpec, FacilitySpec]]:
        """Every meter with its identity and facility, in file order."""
        return [(DeviceId(self.id, f.id, m.id), m, f) for f in self.facilities for m in f.meters]

    def extra_fields(self) -> dict[DeviceId, frozenset[str]]:
        """Per meter that has any, the fields it may write beyond the contract's channels."""
        return {device: meter.extra_fields() for device, meter, _ in self.devices()
                if meter.extra_fields()}


def load_estate(path: Path) -> EstateSpec:
    """Load and validate an estate description; raise ``ConfigError`` saying what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read estate file {path}: {exc}") from exc
    try:
        spec = EstateSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"estate file {path} is invalid:\n{exc}") from exc
    facilities: set[str] = set()
    for facility in spec.facilities:
        if facility.id in facilities:
            raise ConfigError(f"estate file {path}: facility {facility.id!r} appears twice")
        facilities.add(facility.id)
        meters: set[str] = set()
        for meter in facility.meters:
            if meter.id in meters:
                raise ConfigError(f"estate file {path}: meter {meter.id!r} appears twice in "
                                  f"facility {facility.id!r}")
            meters.add(meter.id)
    return spec
