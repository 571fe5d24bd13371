"""The worker's bookkeeping jobs: meter freshness, rollups and register consumption
(docs/rollups.md)."""
