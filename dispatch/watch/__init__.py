"""The control room at work in the dispatch worker: the telemetry watched as it arrives
(streaming rules), the windowed rules on a schedule, and after each, in the same
transaction, the incidents, the crews' assignment and the outbox (docs/alarms.md,
docs/incidents.md)."""
