"""The shared language of Estate Dispatch.

Quantities and units, readings, meter identity, the MQTT topic scheme, the SenML payload
codec, line protocol, settings types, the error tree and the ports (protocols) that the
services program against. Nothing here performs I/O or imports an I/O library: the
``adapters`` package holds one module per backend.
"""

CONTRACT_VERSION = "v1"
