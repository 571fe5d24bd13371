"""The one exception tree of Estate Dispatch.

::

    EstateError
    ├── ContractError          input that breaks the wire contract (never retried)
    │   ├── TopicError         a topic outside the scheme, or an invalid identifier
    │   └── PayloadError       a payload that cannot be decoded at all
    │       └── MalformedCommand     a command or answer the contract cannot carry
    │                                (estate.commands)
    ├── ConfigError            settings or an estate description that cannot be used
    │   ├── PlanningError      the registry describes no plan (no estate, no tariff)
    │   ├── ProblemError       an optimisation input refused, by asset and field
    │   └── TariffError        a tariff without exactly one price per step
    │                          (both dispatch.optimiser)
    ├── StoreError             the time-series store
    │   ├── StoreUnavailable   cannot be reached, timed out or answered 5xx: retry later
    │   │   └── StoreMisconfigured  refused our credentials or lacks the database/bucket
    │   └── StoreRejected      answered 4xx: the request itself is wrong, retrying is useless
    ├── BrokerError            the MQTT broker refused or dropped us
    ├── RegistryError          the registry database failed (unreachable, locked, refused)
    ├── Deposed                the scheduler lease is another holder's now: a fenced write
    │                          refused (dispatch.registry.lock)
    ├── PlanError              a plan cannot be found or moved as asked
    │   ├── PlanNotFound       no such plan (in that estate)
    │   └── PlanConflict       the plan cannot move that way now; the message says why
    ├── AccountError           an account change refused: bad name, password or binding
    │   ├── AccountNotFound    no such user or API token
    │   └── AccountConflict    the name is taken, or the last admin would go
    │                          (all three dispatch.registry.account_desk)
    ├── AlarmStateError        an alarm step its lifecycle forbids (dispatch.alarms.lifecycle)
    ├── IncidentStateError     an incident step its lifecycle forbids
    │                          (dispatch.incidents.model)
    ├── ShiftLogError          a shift-log entry or handover refused (dispatch.incidents.shiftlog)
    ├── DemandResponseError    a demand-response order, opt or statement refused (dispatch.dr)
    ├── RecordNotFound         no such alarm, incident, crew or entry (dispatch.registry.outbox)
    ├── SpoolFull              ingest's local spool holds its bound (ingest.spool)
    ├── BackupError            a backup or restore that cannot be made (launcher.backup)
    └── DeviceError            a device could not be read or commanded
        ├── PollError          a meter's Modbus answer is an exception or unusable
        │                      (edge.modbus)
        └── ExecutionError     a command could not be carried out (edge.command_executors)

The state errors keep ``ValueError`` as a second base, ``RecordNotFound`` ``LookupError``
and ``BackupError`` ``RuntimeError``, for the callers that catch those.

Adapters translate their library's exceptions into this tree at exactly one place each,
with ``raise ... from exc`` so the original stays visible in tracebacks: httpx's and
influxdb-client's in ``adapters.influxdb_v1``/``_v2``, paho's in ``adapters.mqtt``,
SQLAlchemy's in ``dispatch.registry.db``. The web view answers each kind with its HTTP
status in one place (``dispatch.web.app``).
"""

from __future__ import annotations


class EstateError(Exception):
    """Base of every error raised on purpose by Estate Dispatch."""


class ContractError(EstateError):
    """Input that breaks the wire contract."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TopicError(ContractError):
    """A topic outside the scheme or an identifier that is not allowed."""


class PayloadError(ContractError):
    """A payload that cannot be decoded at all (as opposed to one bad record)."""


class ConfigError(EstateError):
    """Settings or an estate description that cannot be used."""


class StoreError(EstateError):
    """The time-series store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached, timed out or answered 5xx; retrying later may work."""


class StoreMisconfigured(StoreUnavailable):
    """The store refused our credentials (401/403) or has no such database or bucket (404).

    Nothing is wrong with the data: an operator must fix the configuration, and until then
    the store is as good as unavailable (ingest spools and retries; it dead-letters nothing).
    """


class StoreRejected(StoreError):
    """The store answered 4xx: the request is wrong and retrying it is useless."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BrokerError(EstateError):
    """The MQTT broker refused a connection, subscription or publication."""


class RegistryError(EstateError):
    """The registry database failed: unreachable, locked beyond its timeout, or refusing."""


class Deposed(EstateError):
    """The scheduler lease this work was started under is no longer ours (taken over, or
    expired): the work must not save or send anything."""


class PlanError(EstateError):
    """A plan cannot be found or moved as asked."""


class PlanNotFound(PlanError):
    """No plan with that id (in that estate)."""


class PlanConflict(PlanError):
    """The plan cannot move that way now; the message says why."""


class AccountError(EstateError, ValueError):
    """An account change refused: a bad name or password, a binding not allowed."""


class AccountNotFound(AccountError, LookupError):
    """No such user or API token."""


class AccountConflict(AccountError):
    """A username taken already, or a change that would leave no enabled admin."""


class PlanningError(ConfigError):
    """The registry cannot describe a plan (no such estate, tariffs without prices)."""


class DemandResponseError(EstateError, ValueError):
    """A demand-response order, an opt decision or a statement request that cannot be
    taken as given; the message says why."""


class DeviceError(EstateError):
    """A device could not be read or commanded."""
