"""Planning: the estate's load forecasts and the rolling plan (docs/planning.md,
docs/forecasting.md)."""
