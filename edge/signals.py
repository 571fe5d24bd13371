"""The simulator's randomness and weather: noise that is a hash of (seed, a meter's identity,
the time slot, the use) rather than a stream, so a meter's readings depend on its own
identity and the times stepped alone (``edge.simulator``), and the clear-sky sun of the
estate's timezone. Pure numpy."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]


_MASK: Final = (1 << 64) - 1
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix_int(x: int) -> int:
    """splitmix64's finaliser on a Python int: a well-spread 64-bit hash."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def identity_key(seed: int, *parts: str) -> int:
    """The 64-bit noise key of an identity under a seed."""
    digest = hashlib.blake2b("/".join(parts).encode(), digest_size=8).digest()
    return _mix_int(int.from_bytes(digest, "little") ^ _mix_int(seed * 0x9E3779B97F4A7C15))


def uniform(keys: NDArray[np.uint64], slot: int, stream: int) -> Floats:
    """A uniform draw in (0, 1) per key for a time slot and a use, the same every time."""
    salt = np.uint64(_mix_int(slot * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03 + 1))
    bits = _mix(keys ^ salt) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def normal(keys: NDArray[np.uint64], slot: int, stream: int) -> Floats:
    """A standard normal draw per key (Box-Muller over two uniform draws)."""
    u1, u2 = uniform(keys, slot, 2 * stream), uniform(keys, slot, 2 * stream + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)


def smooth(keys: NDArray[np.uint64], time_ms: int, knot_ms: int, stream: int) -> Floats:
    """Noise in [-1, 1] that moves smoothly between random values every ``knot_ms``."""
    slot, rest = divmod(time_ms, knot_ms)
    a, b = uniform(keys, slot, stream), uniform(keys, slot + 1, stream)
    w = rest / knot_ms
    w = w * w * (3 - 2 * w)
    return 2 * (a + (b - a) * w) - 1


@cache
def timezone_position(timezone: str) -> tuple[float, float]:
    """Latitude and longitude of a timezone's reference city (the tz database's zone1970.tab).

    The estate file names a timezone but no position; its city is close enough for a
    clear-sky curve. Unknown zones sit on the equator at the zone's own meridian.
    """
    for table in (Path("/usr/share/zoneinfo/zone1970.tab"), Path("/usr/share/zoneinfo/zone.tab")):
        try:
            text = table.read_text(encoding="utf-8")
        except OSError:
            continue
        for row in text.splitlines():
            cols = row.split("\t")
            if len(cols) >= 3 and cols[2] == timezone:
                return _iso6709(cols[1])
    offset = datetime.now(ZoneInfo(timezone)).utcoffset()
    return 0.0, (offset.total_seconds() / 3600 * 15) if offset else 0.0


def _iso6709(text: str) -> tuple[float, float]:
    split = max(text.rfind("+"), text.rfind("-"))
    lat, lon = text[:split], text[split:]

    def degrees(part: str, width: int) -> float:
        sign = -1.0 if part[0] == "-" else 1.0
        digits = part[1:]
        d, m = int(digits[:width]), int(digits[width:width + 2])
        s = int(digits[width + 2:width + 4]) if len(digits) > width + 2 else 0
        return sign * (d + m / 60 + s / 3600)

    return degrees(lat, 2), degrees(lon, 3)


def clear_sky(time_ms: int, latitude: float, longitude: float) -> float:
    """Clear-sky output of a PV array as a share of its peak (0 at night, about 1 at zenith)."""
    moment = datetime.fromtimestamp(time_ms / 1000, UTC)
    day = moment.timetuple().tm_yday
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + day) / 365)
    b = 2 * math.pi * (day - 81) / 364
    equation_of_time_min = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)
    utc_h = moment.hour + moment.minute / 60 + moment.second / 3600
    solar_h = utc_h + longitude / 15 + equation_of_time_min / 60
    hour_angle = math.radians(15 * (solar_h - 12))
    lat = math.radians(latitude)
    sin_elevation = (math.sin(lat) * math.sin(declination)
                     + math.cos(lat) * math.cos(declination) * math.cos(hour_angle))
    # Air mass thins the light near the horizon; the exponent is a simple fit of that.
    return float(max(0.0, sin_elevation) ** 1.2)


@dataclass(frozen=True, slots=True)
class Weather:
    """What the whole estate shares at one instant."""

    ambient_c: float
    clear_sky: float
    cloud: float
    voltage_drift: float
    frequency: float
