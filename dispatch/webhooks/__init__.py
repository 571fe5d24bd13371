"""Webhooks: the control room's events, delivered signed to other systems.

``targets`` (which URLs may be sent to, checked after DNS and on every redirect),
``signing`` (Standard Webhooks signatures, secrets), ``payloads`` (which subscription wants
which event; CloudEvents 1.0 or chat text), ``backoff`` (when to try again), ``sender``
(one POST over httpx, bounded in time and in what it reads), ``deliverer`` (the loop the
dispatch worker runs: fan-out, claims, ordered sends, outcomes) and ``metrics``.
docs/webhooks.md tells receivers how to verify what they get.
"""
