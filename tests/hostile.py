"""Hostile payloads that authorised devices can send: what bounded work must withstand."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from adapters.mqtt import MqttConnection
from estate.settings import MqttSettings

FLOOD_BYTES = 255_000
"""Just under the payload limit (256 KiB)."""


def long_base_name_pack(base_name: str, records: int = 3_999, size: int = FLOOD_BYTES,
                        bt: float = 0.0) -> bytes:
    """A pack whose first record sets ``base_name`` (a 100,000-character one, say),
    followed by ``records`` records it applies to, padded to ``size`` bytes with an
    extension field (which SenML ignores)."""
    first: dict[str, Any] = {"bn": base_name, "bt": bt, "n": "power", "u": "kW", "v": 1.5}
    rest: list[dict[str, Any]] = [{"n": "power", "u": "kW", "v": 1.5} for _ in range(records)]
    bare = len(orjson.dumps([first, *rest]))
    pad = max(0, (size - bare) // records - len(',"p":""'))
    for record in rest:
        record["p"] = "p" * pad
    return orjson.dumps([first, *rest])


def long_name_pack(name: str, bt: float = 0.0) -> bytes:
    """One record with a name of the caller's choosing (a unique 250 KB one, say)."""
    return orjson.dumps([{"bt": bt, "n": name, "u": "kW", "v": 1.5}])


def flood(mqtt: MqttSettings, topic: str, count: int = 100) -> None:
    """``count`` packs of each kind on ``topic``, as fast as the broker takes them: a
    100,000-character base name naming another identity over 3,999 records, and a unique
    250 KB name. Returns once the broker acknowledged every one."""
    client = MqttConnection(mqtt, f"attacker-{uuid.uuid4().hex[:8]}")
    client.connect()
    now = time.time()
    infos = []
    for k in range(count):
        infos.append(client.publish(topic, long_base_name_pack(
            "x" * 99_990 + f"{k:04d}:other:", bt=now), qos=1))
        infos.append(client.publish(topic, long_name_pack(f"{k:06d}" + "n" * 250_000, bt=now),
                                    qos=1))
    for info in infos:
        info.wait(300)
    client.close()
