"""Settings of the dispatch worker and the web view (environment prefix ``DISPATCH_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from estate.model import SAMPLE_ESTATE
from estate.settings import InfluxSettings, MqttSettings


class WebSettings(BaseModel):
    """The web view (``DISPATCH_WEB__``): where it listens and what it lets in
    (docs/security.md, "The web view")."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # The names the view is reached by (the Host header): anything else is refused with
    # 400, so a rebinding DNS name cannot reach it from a browser. ``*.example.org`` allows
    # subdomains; ``*`` alone allows every name (not for production).
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost"],
                                     min_length=1)
    # Origins (``https://dispatch.example.org``) allowed to send state changes besides the
    # view's own (the Origin that matches the Host header); a reverse proxy that rewrites
    # Host needs its public origin here.
    allowed_origins: list[str] = Field(default_factory=list)
    # Send the session cookie over TLS only: on wherever the view is reached by https
    # (the compose stack behind its proxy). Left off for the plain-HTTP loopback demo.
    cookie_secure: bool = False
    # A session lasts one long shift; then its user logs in again.
    session_hours: float = Field(12.0, gt=0, le=24 * 7)
    # Request bodies: the largest the API takes (a plan decision, a user) is under 2 KB;
    # 64 KiB leaves room and refuses a flood at once (413).
    max_body_bytes: int = Field(65_536, ge=1024)
    # Live streams: a control-room screen and a phone or two per session; in all, enough
    # for a busy control room without starving the rest of the process.
    max_streams_per_session: int = Field(4, ge=1)
    max_streams: int = Field(500, ge=1)
    # Failed logins: 5 per account per 15 minutes stops guessing while a typo is
    # forgiven; an address (a shared NAT of a control room) gets 30.
    login_failures_per_account: int = Field(5, ge=1)
    login_failures_per_address: int = Field(30, ge=1)
    login_window_s: float = Field(900.0, gt=0)
    # The supervisor's status, a file or an http(s):// URL (the demo's var/supervisor.json):
    # with it, /api/health and the page show each supervised service. None elsewhere.
    supervisor_status: str | None = Field(None, min_length=1, max_length=1000)


class RollupSettings(BaseModel):
    """The rollup job: levels, consumption, retention of rollups (see docs/rollups.md)."""

    # The finest level is one minute: running more often would only rewrite the same points.
    every_s: float = Field(60.0, gt=0)
    # A window is rolled up this long after it ends: ingest stores a reading within about
    # a second of receiving it, and gateway links and meter clocks add a few seconds more.
    grace_s: float = Field(30.0, ge=0)
    # Each run recomputes this much of each level, so readings that arrive late still
    # reach the rollups. The 1-minute level catches readings up to 10 minutes late (older
    # ones need a rollup request); each coarser level must reach back over what its finer
    # level can still change, plus one of its own windows (checked below), with margin
    # for a worker that ran late.
    trailing_1m_s: float = Field(600.0, gt=0)
    trailing_15m_s: float = Field(7200.0, gt=0)
    trailing_1h_s: float = Field(21600.0, gt=0)
    # 1-minute rollups are the bulk of the rollup data (60 times the hourly level); 90 days
    # covers incident reviews and is longer than raw retention, which a rollup request
    # needs. 15-minute and hourly rollups and consumption (billing) are kept for good.
    retention_1m: str = Field("90d", pattern=r"^(\d+[wdhm]|INF)$")
    retention_long: str = Field("INF", pattern=r"^(\d+[wdhm]|INF)$")
    # The consumption of a window's first reading is measured from the meter's reading
    # before it, if there is one this recent: six hours covers a gateway offline for a
    # shift. After a longer gap the first reading only starts the count again.
    previous_reading_lookback_s: float = Field(21600.0, gt=0)
    # One query's answer has at most this many windows per series, and one quantity's
    # series: for 10,000 meters 12 × 10,000 = 120,000 rows, about 5 MB of JSON.
    max_query_windows: int = Field(12, ge=1)
    # Consumption reads every raw register reading, so its queries cover one 15-minute
    # window each (a multiple of 15 minutes).
    raw_query_span_s: int = Field(900, ge=900, multiple_of=900)
    # At most this much time per level (and of rollup requests) per run: a worker that
    # was stopped for days, or a request over weeks, catches up over several runs instead
    # of holding the job for hours.
    max_span_per_run_s: int = Field(21600, ge=3600)
    # Requests are read once they are this old, so one written by a host whose clock is a
    # little ahead, or still in flight, is not passed over.
    request_settle_s: float = Field(30.0, ge=0)
    # Nothing older than raw retention (``influx.raw_retention``, 30 days) can be rolled
    # up again: requests and catching up stop there. Keep the two in step.
    max_age_s: float = Field(30 * 86400.0, gt=0)
    # 5,000 lines per write is where InfluxDB 1.x reaches its full write rate (as ingest).
    write_batch_lines: int = Field(5000, ge=1)

    @model_validator(mode="after")
    def _coarser_levels_reach_back_far_enough(self) -> RollupSettings:
        if self.trailing_15m_s < self.trailing_1m_s + 900:
            raise ValueError("trailing_15m_s must be at least trailing_1m_s + 900")
        if self.trailing_1h_s < self.trailing_15m_s + 3600:
            raise ValueError("trailing_1h_s must be at least trailing_15m_s + 3600")
        return self


class ForecastSettings(BaseModel):
    """The forecast job (``DISPATCH_FORECAST__``); docs/forecasting.md."""

    # The optimiser plans in quarter-hours: a fresher forecast than that changes no plan.
    every_s: float = Field(900.0, gt=0)
    # 48 hours, the longest rolling plan (96-192 steps).
    horizon_steps: int = Field(192, ge=1, le=7 * 96)
    # Weeks of history behind each profile (see ``ForecastParams.weeks``).
    weeks: int = Field(4, ge=1, le=52)
    # Where the quarter-hour rollups do not reach yet (the newest quarter-hour, a
    # rollup job that is behind or new), the mean of the raw readings is taken instead,
    # at most this far back: a week is what the profile+level rung needs, and raw
    # queries cost far more than rollup ones.
    raw_fallback_s: float = Field(7 * 86400.0, ge=0)


class PlanningSettings(BaseModel):
    """The rolling re-plan (``DISPATCH_PLANNING__``); docs/planning.md."""

    # A plan every quarter-hour, the optimiser's step: each plan starts at the next step.
    every_s: float = Field(900.0, gt=0)
    step_minutes: int = Field(15, ge=5, le=60)
    # 24 hours ahead by default; up to 48 (the forecast's horizon).
    horizon_steps: int = Field(96, ge=4, le=192)
    time_limit_s: float = Field(60.0, gt=0)
    mip_rel_gap: float = Field(0.01, ge=0, le=1)
    # Each plan is made this long before the quarter-hour it starts with (when ``every_s``
    # is whole minutes): room for the solve within its time limit and for the commands to
    # travel, so automatic setpoints arrive as their step begins.
    lead_s: float = Field(90.0, ge=0)
    # A setpoint command must start within this long of being sent, or the device refuses
    # it as expired and the control room times it out.
    command_deadline_s: float = Field(120.0, gt=0)


class DemandResponseSettings(BaseModel):
    """The OpenADR 2.0b VEN and the rules of the programme it serves (docs/demand-response.md)."""

    vtn_url: str | None = None
    """The grid operator's VTN, e.g. ``https://vtn.example/OpenADR2/Simple/2.0b``; None: no VEN."""
    ven_name: str = Field("estate-dispatch", min_length=1, max_length=100)
    ven_id: str | None = None
    standing_opt: Literal["in", "out"] = "in"
    """The answer an event gets when it arrives; an operator changes it later (``estate dr
    opt``), which sends the VTN a new opt."""
    programme: str = Field("demand response", max_length=100)
    payment_per_kwh: float = Field(0.0, ge=0, le=1000)
    penalty_per_kwh: float = Field(0.0, ge=0, le=1000)
    currency: str = Field("EUR", min_length=3, max_length=8)
    every_s: float = Field(60.0, gt=0)
    """How often the demand-response job moves orders along (split, settle, opts)."""
    report_interval_s: float = Field(60.0, ge=10, le=3600)
    """How often the estate's import is reported to the VTN while it asks for it."""
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    vtn_fingerprint: str | None = None


class WebhookSettings(BaseModel):
    """The webhook deliverer (``DISPATCH_WEBHOOKS__``); docs/webhooks.md."""

    enabled: bool = True
    # Receivers sent to at once, each in order; more would mostly wait on the GIL and the
    # registry's writes, fewer lets one slow receiver hold the others up.
    concurrency: int = Field(8, ge=1, le=64)
    # How often an idle deliverer looks for new events: the floor of an alert's delay.
    poll_s: float = Field(0.2, gt=0)
    # A subscription is claimed for this long; a deliverer stops taking new deliveries of
    # it after half of that, so its claim never runs out while it sends.
    claim_s: float = Field(60.0, gt=0)
    # Deliveries sent per claim of a receiver, before their outcomes are written at once.
    batch: int = Field(50, ge=1, le=1000)
    # A receiver that does not accept a connection in 5 s or answer in 10 s is failing.
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    # Retries: the first after ``backoff_base_s``, doubling to at most ``backoff_max_s``,
    # each spread by up to ``jitter`` of itself so receivers that failed together do not
    # come back together. 5 s doubling to an hour over 18 tries spans about 8.5 hours.
    backoff_base_s: float = Field(5.0, gt=0)
    backoff_max_s: float = Field(3600.0, gt=0)
    jitter: float = Field(0.2, ge=0, le=1)
    max_attempts: int = Field(18, ge=1, le=100)
    # A receiver's Retry-After is honoured up to this long.
    max_retry_after_s: float = Field(6 * 3600.0, gt=0)
    # Targets: private, loopback and link-local addresses are refused unless allowed.
    allow_private: bool = False
    allow_loopback: bool = False
    # Redirects are followed this many times, each target checked like the first.
    max_redirects: int = Field(3, ge=0, le=10)
    # After a secret's rotation the old one still signs for this long.
    rotation_overlap_s: float = Field(86400.0, gt=0)
    # /metrics of the deliverer (queue depth, deliveries by outcome, dead deliveries);
    # 0: not served.
    metrics_port: int = Field(0, ge=0, le=65535)


class DispatchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", env_nested_delimiter="__",
                                      extra="forbid")

    mode: Literal["local", "production"] = "local"
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    web: WebSettings = WebSettings()
    estate_file: Path = SAMPLE_ESTATE
    # A meter that has not reported for this long is stale: five demo intervals, and far
    # less than any real meter's 15-minute register period.
    stale_after_s: float = Field(60.0, gt=0)
    # How often the scheduler checks for stale meters.
    freshness_every_s: float = Field(30.0, gt=0)
    # The rollup job (``DISPATCH_ROLLUPS__EVERY_S`` and so on); defaults explained above.
    rollups: RollupSettings = RollupSettings()
    forecast: ForecastSettings = ForecastSettings()
    planning: PlanningSettings = PlanningSettings()
    demand_response: DemandResponseSettings = DemandResponseSettings()
    # The registry database (docs/registry.md): an SQLite file by default, PostgreSQL by URL
    # (postgresql+psycopg://user:password@host/registry).
    registry_url: str = "sqlite:///var/registry.sqlite"
    # The worker loads the estate file into the registry at start (an idempotent upsert,
    # docs/registry.md), so the file stays the description of the estate. Turn it off
    # where the registry is kept up to date by other means (``estate registry load``).
    registry_load_estate: bool = True
    # Another worker takes over the scheduler at most this long after the active one stops
    # renewing (it renews every third of it); keep it well above clock skew between hosts.
    # A plan solved under a lease that was lost meanwhile is not saved (the fencing token).
    scheduler_lease_ttl_s: float = Field(30.0, gt=0)
    # A pending command claimed by a sender that died is delivered by another this long
    # after the claim: beyond a publication's round trip, well inside a command's deadline.
    command_claim_s: float = Field(10.0, gt=0)
    # The worker's /metrics and /health (port 0: none); docs/operations.md.
    http_host: str = "127.0.0.1"
    http_port: int = Field(9102, ge=0, le=65535)
    webhooks: WebhookSettings = WebhookSettings()
