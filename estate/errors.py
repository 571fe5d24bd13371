"""The one exception tree of Estate Dispatch.

::

    EstateError
    ├── ContractError          input that breaks the wire contract (never retried)
    │   ├── TopicError         a topic outside the scheme, or an invalid identifier
    │   └── PayloadError       a payload that cannot be decoded at all
    ├── ConfigError            settings or an estate description that cannot be used
    │   └── (dispatch.optimiser: ProblemError, an optimisation input refused by asset
    │        and field; TariffError, a tariff without exactly one price per step)
    ├── StoreError             the time-series store
    │   ├── StoreUnavailable   cannot be reached, timed out or answered 5xx: retry later
    │   │   └── StoreMisconfigured  refused our credentials or lacks the database/bucket
    │   └── StoreRejected      answered 4xx: the request itself is wrong, retrying is useless
    └── BrokerError            the MQTT broker refused or dropped us

Adapters translate their library's exceptions into this tree at exactly one place each,
with ``raise ... from exc`` so the original stays visible in tracebacks.
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
