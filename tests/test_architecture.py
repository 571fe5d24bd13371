"""The rules ARCHITECTURE.md states that import-linter cannot check, checked here so that a
break is red: modules and functions stay small, no module imports itself round a circle,
InfluxQL is written in ``adapters`` only. (Which library each room may import is
import-linter's part: ``pyproject.toml``, run by ``make test``.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("estate", "adapters", "edge", "ingest", "dispatch", "launcher")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Alembic migrations are generated DDL, one statement after another: the exception.
EXEMPT = ("dispatch/registry/migrations/",)

# What only InfluxQL says (the edge's SQLite statements say none of it): its statements
# on series, retention and schema, GROUP BY time(), fill(), and a double-quoted
# identifier after FROM or in a tag condition.
INFLUXQL = re.compile(
    r"GROUP BY time\(|\bfill\((none|null|previous|linear)|RETENTION POLICY|"
    r"SHOW (FIELD KEYS|TAG KEYS|TAG VALUES|MEASUREMENTS|SERIES|RETENTION)|"
    r"\bFROM\s+\\?\"|\bDROP (MEASUREMENT|SERIES)|\bnow\(\)\s*-|'\"\w+\" = \$")


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if not any(str(p.relative_to(ROOT)).startswith(e) for e in EXEMPT))


def _functions(tree: ast.AST) -> list[tuple[str, int]]:
    """(name, lines) of every function, its decorators included."""
    return [(node.name, node.end_lineno - min([node.lineno] + [d.lineno for d in
                                                                 node.decorator_list]) + 1)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None]


def _over_the_limits() -> dict[str, int]:
    """Every module over 400 lines and function over 80, with its length."""
    over: dict[str, int] = {}
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(ROOT))
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            over[name] = lines
        for function, n in _functions(ast.parse(text)):
            if n > MAX_FUNCTION_LINES:
                over[f"{name}:{function}"] = n
    return over


def test_no_module_over_400_lines_and_no_function_over_80() -> None:
    over = _over_the_limits()
    assert over == {}, "over the limits:\n" + "\n".join(
        f"{k}: {n} lines" for k, n in sorted(over.items()))


def test_the_line_counts_see_a_long_function() -> None:
    body = "\n".join(f"    x{k} = {k}" for k in range(85))
    [(name, lines)] = _functions(ast.parse(f"@decorated\ndef long() -> None:\n{body}\n"))
    assert (name, lines) == ("long", 87)


def test_no_import_circle_anywhere() -> None:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    circles = _circles({m: graph.find_modules_directly_imported_by(m) for m in graph.modules})
    assert circles == [], "\n".join(" -> ".join(c) for c in circles)


def test_the_circle_finder_finds_one() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _circles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(imports.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return sorted(found)


def test_influxql_is_written_in_adapters_only() -> None:
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in _sources() if path.relative_to(ROOT).parts[0] != "adapters"
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if INFLUXQL.search(line)]
    assert found == [], "\n".join(found)


def test_the_influxql_check_knows_influxql_from_sqlite() -> None:
    for statement in ('SELECT mean("power") FROM "reading" GROUP BY time(15m) fill(none)',
                      "SHOW FIELD KEYS FROM reading", 'f\'"estate" = $estate AND\'',
                      "CREATE RETENTION POLICY raw ON estate DURATION 30d REPLICATION 1"):
        assert INFLUXQL.search(statement), statement
    for statement in ("SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id",
                      "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"):
        assert not INFLUXQL.search(statement), statement
