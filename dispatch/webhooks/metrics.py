"""The deliverer's metrics (Prometheus, the process's default registry, so whatever serves
the worker's ``/metrics`` serves them too)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The name and labels the alert rules expect (deploy/prometheus/alerts.yml).
DELIVERIES = Counter("dispatch_webhook_deliveries_total",
                     "Webhook delivery attempts by result: delivered, retried (failed or "
                     "refused, tried again later) or dead (failed for good)", ["result"])
QUEUE_DEPTH = Gauge("dispatch_webhook_queue_depth", "Webhook deliveries waiting to be sent")
DEAD = Gauge("dispatch_webhook_dead_deliveries",
             "Webhook deliveries that failed for good and were not redelivered")
LATENCY = Histogram("dispatch_webhook_latency_seconds", "Time a receiver took to answer",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
