"""docs/contract.md must say what the code does: reasons, quantities and units."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

import estate.senml
import estate.senml_names
from estate.units import CHANNELS, QUANTITIES, UNITS

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    """Table rows of the document by their first cell (a `code` name)."""
    found: dict[str, list[str]] = {}
    for text in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([^`]+)` \|(.*)\|\s*$", text)
        if match:
            cells = [c.strip() for c in match.group(2).split("|")]
            found.setdefault(match.group(1), cells)
    return found


def _decoder_reasons() -> set[str]:
    source = "".join(Path(module.__file__).read_text(encoding="utf-8")
                     for module in (estate.senml, estate.senml_names))
    patterns = (r'Rejection\(\s*"([a-z-]+)"', r'_whole\(\s*"([a-z-]+)"',
                r'return \(?"([a-z-]+)",')
    return {m for p in patterns for m in re.findall(p, source)}


def test_the_decoder_has_reasons() -> None:
    assert {"malformed-json", "identity-mismatch", "out-of-range"} <= _decoder_reasons()


@pytest.mark.parametrize("reason", sorted(_decoder_reasons()))
def test_every_decoder_reason_is_documented(rows: dict[str, list[str]], reason: str) -> None:
    assert reason in rows, f"docs/contract.md has no row for {reason!r}"
    assert rows[reason][0], reason


@pytest.mark.parametrize("name", sorted(QUANTITIES))
def test_every_quantity_is_documented(rows: dict[str, list[str]], name: str) -> None:
    q = QUANTITIES[name]
    meaning, unit, kind, minimum, maximum = rows[name][:5]
    assert meaning.startswith(q.label)
    assert unit == f"`{q.unit}`"
    assert kind == q.kind.value
    assert float(minimum) == q.minimum
    assert float(maximum) == q.maximum


def _number(text: str) -> Fraction:
    text = text or "0"
    if "/" in text:
        numerator, denominator = text.split("/")
        return Fraction(numerator) / Fraction(denominator)
    return Fraction(text)


@pytest.mark.parametrize("name", sorted(UNITS))
def test_every_unit_is_documented(rows: dict[str, list[str]], name: str) -> None:
    unit = UNITS[name]
    dimension, scale, offset, base, registry = rows[name][:5]
    assert dimension == unit.dimension.replace("_", " ")
    assert float(_number(scale)) == pytest.approx(unit.scale, rel=1e-15)
    assert float(_number(offset)) == unit.offset
    assert UNITS[base.strip("`")].dimension == unit.dimension
    assert registry.split()[0] in {"8428", "8798", "ext"}


def test_documented_units_are_exactly_the_accepted_ones(rows: dict[str, list[str]]) -> None:
    documented = {name for name, cells in rows.items()
                  if len(cells) >= 5 and cells[4].split()[:1] and
                  cells[4].split()[0] in {"8428", "8798", "ext"}}
    assert documented == set(UNITS)


def test_extensions_are_the_documented_non_registry_units(rows: dict[str, list[str]]) -> None:
    extensions = {name for name in UNITS if rows[name][4] == "ext"}
    assert extensions == {"bar", "kPa", "m3/h", "l/min", "MW", "MWh", "kJ", "MJ", "kV"}


def test_the_channels_table_is_the_decoders() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### 3.1 Channels"):text.index("## 4. Units")]
    documented: dict[str, set[str]] = {name: set() for name in QUANTITIES}
    for row in re.findall(r"^\| (`.+`) \| [^|]+ \| ([^|]+) \|$", section, re.MULTILINE):
        channels, quantities = row
        names = re.findall(r"`([^`]+)`", channels)
        if " to " in channels:  # `1` to `8`
            names = [str(k) for k in range(int(names[0]), int(names[1]) + 1)]
        targets = (list(QUANTITIES) if quantities.strip() == "every quantity"
                   else [q.strip() for q in quantities.split(",")])
        for quantity in targets:
            documented[quantity] |= set(names)
    assert documented == {name: set(channels) for name, channels in CHANNELS.items()}
