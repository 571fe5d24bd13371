"""The golden payload samples are the wire contract: each must decode exactly as it says."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from estate.senml import decode_pack
from estate.topics import Channel, DeviceId, parse_topic

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "firmware_stubs" / "payloads"
FIRMWARE = ROOT / "firmware_stubs" / "device" / "main.py"
SAMPLES = sorted(PAYLOADS.glob("*.json"))
NOW_MS = 1_700_000_000_000


def _load(path: Path) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return sample


def _payload_bytes(sample: dict[str, Any]) -> bytes:
    if "payload_text" in sample:
        return str(sample["payload_text"]).encode("utf-8")
    return json.dumps(sample["payload"], allow_nan=False).encode("utf-8")


def test_there_are_at_least_twelve_samples() -> None:
    assert len(SAMPLES) >= 12


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_is_well_formed(path: Path) -> None:
    sample = _load(path)
    assert set(sample) >= {"description", "topic", "now_ms", "expect"}
    assert ("payload" in sample) != ("payload_text" in sample)
    assert sample["description"].strip()
    assert parse_topic(sample["topic"]).channel is Channel.TELEMETRY
    assert set(sample["expect"]) == {"readings", "rejections"}
    for reading in sample["expect"]["readings"]:
        assert set(reading) == {"quantity", "channel", "value", "unit", "time_ms"}


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_decodes_as_expected(path: Path) -> None:
    sample = _load(path)
    parsed = parse_topic(sample["topic"])
    decoded = decode_pack(_payload_bytes(sample), parsed.device, sample["now_ms"])

    assert [r.reason for r in decoded.rejections] == sample["expect"]["rejections"]
    expected = sample["expect"]["readings"]
    assert len(decoded.readings) == len(expected)
    for got, want in zip(decoded.readings, expected, strict=True):
        assert (got.estate, got.facility, got.device) == (
            parsed.device.estate, parsed.device.facility, parsed.device.device)
        assert (got.quantity, got.channel, got.unit, got.time_ms) == (
            want["quantity"], want["channel"], want["unit"], want["time_ms"])
        assert math.isclose(got.value, want["value"], rel_tol=1e-9), (got, want)


WHOLE_MESSAGE = {"payload-too-large", "malformed-json", "not-a-pack", "empty-pack",
                 "too-many-records"}


def test_every_rejection_names_its_record_or_the_whole_message() -> None:
    for path in SAMPLES:
        sample = _load(path)
        decoded = decode_pack(_payload_bytes(sample), parse_topic(sample["topic"]).device,
                              sample["now_ms"])
        records = sample.get("payload")
        for rejection in decoded.rejections:
            assert rejection.detail, path.name
            if rejection.reason in WHOLE_MESSAGE:
                assert rejection.record is None, path.name
                assert len(decoded.rejections) == 1, path.name
                assert decoded.readings == [], path.name
            else:
                assert rejection.record is not None, path.name
                if isinstance(records, list):
                    assert 0 <= rejection.record < len(records), path.name


def _firmware() -> ModuleType:
    spec = importlib.util.spec_from_file_location("firmware_main", FIRMWARE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_firmware_pack_decodes_without_rejections() -> None:
    firmware = _firmware()
    device = DeviceId("demo", "textile", "main")
    # What PulseMeter.readings() sends: power in W, the register as an integer count of Wh.
    readings = [("power", "W", 44500.0), ("energy_import", "Wh", 30512500),
                ("voltage.l1", "V", 230.1), ("power_factor", "/", 0.97)]
    pack = firmware.make_pack(device.base_name, readings, NOW_MS // 1000 - 10)

    decoded = decode_pack(json.dumps(pack).encode(), device, NOW_MS)

    assert decoded.rejections == []
    got = [(r.quantity, r.channel, r.value, r.time_ms) for r in decoded.readings]
    assert got == [
        ("power", "", pytest.approx(44.5, rel=1e-12), NOW_MS - 10_000),
        ("energy_import", "", pytest.approx(30512.5, rel=1e-12), NOW_MS - 10_000),
        ("voltage", "l1", 230.1, NOW_MS - 10_000),
        ("power_factor", "", 0.97, NOW_MS - 10_000),
    ]


def test_firmware_pack_of_nothing_is_empty() -> None:
    assert _firmware().make_pack("demo:textile:main:", [], 0) == []


def test_firmware_pack_with_relative_time_decodes_relative_to_receipt() -> None:
    firmware = _firmware()
    device = DeviceId("demo", "foods", "coldroom-temp")
    pack = firmware.make_pack(device.base_name, [("temperature", "Cel", 3.5)], -30)

    decoded = decode_pack(json.dumps(pack).encode(), device, NOW_MS)

    assert decoded.rejections == []
    assert [(r.quantity, r.value, r.time_ms) for r in decoded.readings] == [
        ("temperature", 3.5, NOW_MS - 30_000)]


def test_firmware_topics_follow_the_scheme() -> None:
    firmware = _firmware()
    device = DeviceId(firmware.ESTATE, firmware.FACILITY, firmware.DEVICE)
    assert firmware.topic("telemetry") == device.topic(Channel.TELEMETRY)
    assert firmware.topic("status") == device.topic(Channel.STATUS)
    assert device.base_name == firmware.PREFIX


def test_firmware_ring_keeps_the_newest_packs_in_order() -> None:
    ring = _firmware().Ring(3)
    for n in range(5):
        ring.push(n)
    assert len(ring) == 3
    assert ring.dropped == 2
    assert [ring.pop_oldest() for _ in range(3)] == [2, 3, 4]
    assert len(ring) == 0
    assert ring.peek_oldest() is None
