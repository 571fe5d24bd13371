"""Alarm rules of an estate: what counts as abnormal, for whom, and how urgently.

A rule has an ``id``, a ``kind`` with the kind's parameters, a ``severity`` and a scope:
the whole estate (no scope), a ``facility``, a ``meter_kind`` (a class of meter), both of
those, or one ``meter`` (``facility/meter``). Balance rules may name a ``network``.

The estate file's ``alarm_rules:`` add to ``DEFAULT_RULES`` (the rules every estate gets,
per kind of meter) and override them: for each meter and each rule id, the most specific
rule that matches the meter wins (a meter beats a facility, a facility beats a kind of
meter, a facility and kind together beat either; at the same level the estate file beats
the defaults), so a rule with a default's id and a narrower scope changes the default
for those meters only, and ``enabled: false`` turns it off there.
``estate.rule_binding.bind_rules`` does that and returns the ``RuleBook``: every (source,
rule) pair the evaluators check.

Kinds and their parameters (units are the quantity's canonical unit; times in seconds):

=================  ===============================================================  ======
kind               parameters                                                       mode
=================  ===============================================================  ======
threshold          quantity, channel, high and/or low, hysteresis, for_s             stream
rate_of_change     quantity, channel, max_per_min, for_s                             stream
no_data            timeout_s                                                         both
stuck              quantity, channel, for_s, tolerance                               both
spike              quantity, channel, factor, min_share, min_change, span, warmup,   stream
                   clear_after_s
clock_skew         max_skew_s, for_s                                                 stream
voltage_band       nominal_v, band_share, hysteresis_share, for_s                    stream
power_factor       min_pf, hysteresis, min_power_kw, window_s, for_s                 window
capacity           margin, window_s, horizon_s (0: now; above: forecast), for_s      window
battery_soc        low, high (% charge), hysteresis, for_s                           stream
tank_level         low, high (% full), hysteresis, for_s                             stream
balance            network, window_s, for_s                                          window
=================  ===============================================================  ======

``mode`` says which evaluator runs the rule (``dispatch.alarms``): ``stream`` as readings
arrive, ``window`` on window aggregates every cycle. Threshold, voltage band, battery and
tank rules may be given ``mode: window`` to run on window means instead. Everything is
checked when the estate loads (``estate.rule_binding.check_alarm_rules``): references
exist, the quantity is one the meters in scope measure, thresholds and hysteresis leave a
band that can clear.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from estate.errors import TopicError
from estate.topics import validate_identifier as _validate
from estate.units import QUANTITIES

Severity = Literal["critical", "high", "medium", "low"]
SEVERITIES: Final[tuple[Severity, ...]] = ("critical", "high", "medium", "low")
"""Most urgent first."""

Mode = Literal["stream", "window"]
MeterKindName = Literal["electricity", "water", "gas", "temperature", "hvac", "pv", "battery",
                        "genset", "pump", "tank"]

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Seconds = Annotated[float, Field(ge=0, le=7 * 86400)]
WindowSeconds = Annotated[float, Field(ge=60, le=86400)]


def _identifier(value: str, what: str) -> str:
    try:
        return _validate(value, what)
    except TopicError as exc:
        raise ValueError(exc.detail) from exc


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    severity: Severity = "medium"
    enabled: bool = True
    # What operators read beside the alarm.
    name: str = Field("", max_length=200)
    facility: str | None = None
    meter_kind: MeterKindName | None = None
    meter: str | None = None  # facility/meter

    @field_validator("id")
    @classmethod
    def _rule_id(cls, value: str) -> str:
        return _identifier(value, "rule id")

    @field_validator("meter")
    @classmethod
    def _meter_ref(cls, value: str | None) -> str | None:
        if value is None:
            return None
        facility, sep, meter = value.partition("/")
        if not sep:
            raise ValueError(f"meter {value!r} must be written facility/meter")
        _identifier(facility, "facility id")
        _identifier(meter, "meter id")
        return value

    @property
    def specificity(self) -> int:
        """Meter 4, facility 2, kind of meter 1, added up."""
        return (4 * (self.meter is not None) + 2 * (self.facility is not None)
                + (self.meter_kind is not None))

    def scope_text(self) -> str:
        parts = [f"meter {self.meter}" if self.meter else "",
                 f"facility {self.facility}" if self.facility else "",
                 f"{self.meter_kind} meters" if self.meter_kind else ""]
        return ", ".join(p for p in parts if p) or "the estate"


class _QuantityRule(_Rule):
    quantity: str
    channel: str = ""

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if value not in QUANTITIES:
            raise ValueError(f"unknown quantity {value!r}")
        return value


class _Band(_Rule):
    """A value that must stay between ``low`` and ``high``; raised after ``for_s`` outside,
    cleared once back inside by ``hysteresis``."""

    mode: Mode = "stream"
    for_s: Seconds = 0.0
    # Window of the mean in window mode.
    window_s: WindowSeconds = 300.0

    def band(self) -> tuple[float | None, float | None, float]:
        """(low, high, hysteresis) in the quantity's unit."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _clearable(self) -> _Band:
        low, high, hysteresis = self.band()
        if low is None and high is None:
            raise ValueError(f"rule {self.id!r}: give high, low or both")
        if low is not None and high is not None and low + hysteresis >= high - hysteresis:
            raise ValueError(f"rule {self.id!r}: low {low} and high {high} with hysteresis "
                             f"{hysteresis} leave no normal band to clear into")
        return self


class ThresholdRule(_Band, _QuantityRule):
    kind: Literal["threshold"]
    high: float | None = None
    low: float | None = None
    hysteresis: NonNegative = 0.0

    def band(self) -> tuple[float | None, float | None, float]:
        return self.low, self.high, self.hysteresis


class VoltageBandRule(_Band):
    """Supply voltage of every phase within ``band`` of ``nominal_v``: EN 50160 allows ±10 %
    at the point of supply."""

    kind: Literal["voltage_band"]
    nominal_v: Positive = 230.0
    band_share: Annotated[float, Field(gt=0, lt=1)] = 0.10
    # 1 % of nominal: a supply hovering at the band's edge clears only once clearly in.
    hysteresis_share: Annotated[float, Field(ge=0, lt=1)] = 0.01
    # A minute: motor starts dip the voltage for seconds, which is no news.
    for_s: Seconds = 60.0
    quantity: Literal["voltage"] = "voltage"

    def band(self) -> tuple[float | None, float | None, float]:
        return (self.nominal_v * (1 - self.band_share), self.nominal_v * (1 + self.band_share),
                self.nominal_v * self.hysteresis_share)


class BatterySocRule(_Band):
    kind: Literal["battery_soc"]
    low: float | None = Field(15.0, ge=0, le=100)
    high: float | None = Field(98.0, ge=0, le=100)
    hysteresis: NonNegative = 2.0
    for_s: Seconds = 60.0
    quantity: Literal["state_of_charge"] = "state_of_charge"

    def band(self) -> tuple[float | None, float | None, float]:
        return self.low, self.high, self.hysteresis


class TankLevelRule(_Band):
    """A tank's fill (``state_of_charge``, % full) too low to ride out a pump outage, or so
    high it overflows."""

    kind: Literal["tank_level"]
    low: float | None = Field(20.0, ge=0, le=100)
    high: float | None = Field(95.0, ge=0, le=100)
    hysteresis: NonNegative = 2.0
    for_s: Seconds = 300.0
    quantity: Literal["state_of_charge"] = "state_of_charge"

    def band(self) -> tuple[float | None, float | None, float]:
        return self.low, self.high, self.hysteresis


class RateOfChangeRule(_QuantityRule):
    """The value moves faster than ``max_per_min`` (unit per minute) between readings."""

    kind: Literal["rate_of_change"]
    max_per_min: Positive
    for_s: Seconds = 0.0
    mode: Literal["stream"] = "stream"


class NoDataRule(_Rule):
    """Nothing from the meter for ``timeout_s`` (a deadman)."""

    kind: Literal["no_data"]
    # Five minutes: a meter reporting every 5-60 s has missed several reports, a gateway
    # reconnecting after a broker restart (seconds) has not.
    timeout_s: Annotated[float, Field(ge=10, le=86400)] = 300.0
    mode: Mode = "stream"


class StuckRule(_QuantityRule):
    """The value has not moved by more than ``tolerance`` for ``for_s``: a frozen register
    or a gateway repeating its last poll."""

    kind: Literal["stuck"]
    for_s: Annotated[float, Field(ge=60, le=7 * 86400)] = 3600.0
    tolerance: NonNegative = 0.0
    mode: Mode = "stream"


class SpikeRule(_QuantityRule):
    """One reading far from the recent run of readings: more than ``factor`` times their
    mean absolute deviation from their running mean, and at least ``min_share`` of that mean
    (and ``min_change`` in the unit) away from it."""

    kind: Literal["spike"]
    factor: Annotated[float, Field(gt=1)] = 8.0
    min_share: NonNegative = 0.5
    min_change: NonNegative = 0.0
    # Readings the running mean and deviation remember (an exponential weight of
    # 2 / (span + 1)): 20 readings of a 5-second meter are its last two minutes.
    span: Annotated[int, Field(ge=2, le=10_000)] = 20
    # Readings seen before a spike can be judged: the mean needs a few values to mean
    # anything.
    warmup: Annotated[int, Field(ge=1, le=10_000)] = 5
    # A spike is gone once the readings have been normal this long.
    clear_after_s: Seconds = 60.0
    mode: Literal["stream"] = "stream"


class ClockSkewRule(_Rule):
    """The meter's timestamps stray more than ``max_skew_s`` from their arrival for
    ``for_s`` of arrival time. A backlog replayed after an outage is not skew: its
    timestamps catch up with arrival within moments, a skewed clock's never do."""

    kind: Literal["clock_skew"]
    max_skew_s: Annotated[float, Field(gt=0, le=86400)] = 30.0
    for_s: Seconds = 60.0
    mode: Literal["stream"] = "stream"


class PowerFactorRule(_Rule):
    """The mean power factor over ``window_s`` below ``min_pf`` while the meter draws at
    least ``min_power_kw`` (at idle the power factor means nothing)."""

    kind: Literal["power_factor"]
    # 0.85: below it most industrial tariffs charge for reactive energy.
    min_pf: Annotated[float, Field(gt=0, le=1)] = 0.85
    hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.02
    min_power_kw: NonNegative = 5.0
    window_s: WindowSeconds = 900.0
    for_s: Seconds = 900.0
    mode: Literal["window"] = "window"
    quantity: Literal["power_factor"] = "power_factor"


class CapacityRule(_Rule):
    """Import above the capacity limit (the estate's contracted capacity, or a tenant's
    sub-limit when the rule names a facility), less ``margin``, as a mean over
    ``window_s``; with ``horizon_s``, the forecast within that horizon instead."""

    kind: Literal["capacity"]
    margin: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Fifteen minutes: the interval over which tariffs measure demand.
    window_s: WindowSeconds = 900.0
    horizon_s: Annotated[float, Field(ge=0, le=7 * 86400)] = 0.0
    hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.02
    for_s: Seconds = 0.0
    mode: Literal["window"] = "window"


class BalanceRule(_Rule):
    """A network node against the sum of its children over ``window_s`` (the node's losses
    and tolerances come from the network, ``estate.networks``)."""

    kind: Literal["balance"]
    network: str | None = None
    window_s: WindowSeconds = 900.0
    # Out of balance for two windows: one can be a meter reporting late; two is news.
    for_s: Seconds = 1800.0
    mode: Literal["window"] = "window"


AlarmRuleSpec = Annotated[
    ThresholdRule | VoltageBandRule | BatterySocRule | TankLevelRule | RateOfChangeRule
    | NoDataRule | StuckRule | SpikeRule | ClockSkewRule | PowerFactorRule | CapacityRule
    | BalanceRule,
    Field(discriminator="kind"),
]
BandRule = ThresholdRule | VoltageBandRule | BatterySocRule | TankLevelRule
METER_RULES: Final = (ThresholdRule, VoltageBandRule, BatterySocRule, TankLevelRule,
                      RateOfChangeRule, NoDataRule, StuckRule, SpikeRule, ClockSkewRule,
                      PowerFactorRule)


def _defaults() -> tuple[AlarmRuleSpec, ...]:
    electrical = ("electricity", "hvac", "pump")
    rules: list[AlarmRuleSpec] = [
        NoDataRule(kind="no_data", id="no-data", severity="high",
                   name="No readings from the meter"),
        ClockSkewRule(kind="clock_skew", id="clock-skew", severity="low",
                      name="Meter clock is off"),
        TankLevelRule(kind="tank_level", id="tank-level", meter_kind="tank", severity="high",
                      name="Tank level out of range"),
        BatterySocRule(kind="battery_soc", id="battery-soc", meter_kind="battery",
                       severity="medium", name="Battery charge out of range"),
        CapacityRule(kind="capacity", id="capacity", severity="critical",
                     name="Import above the contracted capacity"),
        CapacityRule(kind="capacity", id="capacity-forecast", severity="medium",
                     horizon_s=2 * 3600.0,
                     name="Import forecast above the contracted capacity"),
        BalanceRule(kind="balance", id="balance", severity="high",
                    name="Network out of balance (leak, theft or meter fault)"),
        # Water pressure: a drop to half the supply pressure is a burst or a dry network.
        ThresholdRule(kind="threshold", id="pressure-low", meter_kind="water",
                      quantity="pressure", low=1.5, hysteresis=0.2, for_s=60.0,
                      severity="high", name="Water pressure low"),
        StuckRule(kind="stuck", id="stuck", meter_kind="temperature", quantity="temperature",
                  for_s=6 * 3600.0, severity="low", name="Temperature reading frozen"),
    ]
    for kind in electrical:
        rules += [
            VoltageBandRule(kind="voltage_band", id="voltage-band", meter_kind=kind,
                            severity="high", name="Supply voltage outside ±10 %"),
            PowerFactorRule(kind="power_factor", id="power-factor", meter_kind=kind,
                            severity="low", name="Power factor low"),
            SpikeRule(kind="spike", id="spike", meter_kind=kind, quantity="power",
                      min_change=5.0, severity="medium", name="Power spike"),
            # An hour without the least change of a meter drawing power: its noise alone
            # moves the last digit every reading.
            StuckRule(kind="stuck", id="stuck", meter_kind=kind, quantity="power",
                      for_s=3600.0, severity="medium", name="Power reading frozen"),
        ]
    for kind, quantity in (("water", "water_flow"), ("gas", "gas_flow")):
        rules.append(SpikeRule(kind="spike", id="spike", meter_kind=kind, quantity=quantity,
                               min_change=1.0, severity="medium", name="Flow spike"))
    return tuple(rules)


DEFAULT_RULES: Final[tuple[AlarmRuleSpec, ...]] = _defaults()
"""The rules every estate gets; the estate file's rules override them by id and scope."""
