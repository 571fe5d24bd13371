"""The ingest service: MQTT telemetry in, validated readings into the time-series store."""
