"""What ingest counts in /metrics, and its refusal log: one line per reason (or kind of
register event) per period at most, however many a device causes (docs/operations.md)."""

from __future__ import annotations

import logging

from log_rate_limit import StreamRateLimitFilter
from prometheus_client import Counter, Gauge, Histogram

# Refusals and register events can come by the thousand from one device: each is counted
# in /metrics, and logged at most once per reason (or kind) per period, the next line
# saying how many were held back meanwhile.
REFUSAL_LOG_PERIOD_S = 10.0
refusals = logging.getLogger("ingest.refusals")
refusals.addFilter(StreamRateLimitFilter(
    period_sec=REFUSAL_LOG_PERIOD_S, default_stream_id=None, filter_undefined=False,
    summary_msg="(and {numskip} more like it in the last {period_sec:g} s)"))

MESSAGES = Counter("ingest_messages_total", "MQTT messages received")
READINGS = Counter("ingest_readings_written_total", "Readings stored (written or spooled)")
REJECTED = Counter("ingest_rejected_total", "Messages or records refused", ["reason"])
DEAD_LETTERS_WRITTEN = Counter("ingest_dead_letters_total",
                               "Dead letters written (one per reason per message)", ["reason"])
COUNTER_EVENTS = Counter("ingest_counter_events_total", "Register rollovers and resets",
                         ["kind"])
WRITE_RETRIES = Counter("ingest_write_retries_total", "Batch writes retried")
SPOOLED = Counter("ingest_spooled_lines_total", "Lines written to the local spool")
REPLAYED = Counter("ingest_replayed_lines_total", "Spooled lines replayed into the store")
SPOOL_BYTES = Gauge("ingest_spool_bytes", "Bytes waiting in the local spool")
QUEUE_DEPTH = Gauge("ingest_queue_messages", "Messages received and not yet processed")
BATCH_LINES = Histogram("ingest_batch_lines", "Lines per stored batch",
                        buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000))
ACK_LATENCY = Histogram("ingest_ack_latency_seconds", "From receipt to acknowledgement",
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
READING_AGE = Histogram("ingest_reading_age_seconds",
                        "Age of a batch's newest reading when stored (end-to-end lag)",
                        buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 60, 300, 3600))
