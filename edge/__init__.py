"""The edge: the gateway that polls meters and the estate simulator, both publishing SenML."""
