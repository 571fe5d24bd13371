"""The command contract: request/response payloads, the policy validator, the life cycle."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from estate.commands import (
    ACTIONS,
    FINAL_STATES,
    CommandPolicy,
    CommandRequest,
    CommandResponse,
    CommandState,
    MalformedCommand,
    Reason,
    ResponseStatus,
    can_move,
    check,
    decode_request,
    decode_response,
    state_for,
)
from estate.errors import ConfigError, PayloadError

ID = "c7f0e0b2-6a4e-4d0e-9d7a-0c6f4f0c2a11"
NOW = 1_700_000_000_000
DOC = Path(__file__).resolve().parents[2] / "docs" / "commands.md"


def _body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {"id": ID, "action": "set_battery_kw", "params": {"kw": -120.5},
                               "deadline_ms": NOW + 30_000, "issued_by": "operator:ana"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()

POLICY = CommandPolicy.from_mapping({
    "set_battery_kw": {"kw": {"min": -250, "max": 250}},
    "start": {},
    "stop": None,
    "set_level_setpoint": {"m": {"min": 0.5, "max": 4, "required": False}},
})


def test_a_request_round_trips() -> None:
    request = decode_request(orjson.dumps(_body()))
    assert request == CommandRequest(ID, "set_battery_kw", {"kw": -120.5}, NOW + 30_000,
                                     "operator:ana")
    assert decode_request(request.encode()) == request
    assert decode_request(orjson.dumps(_body(params=_DROP))).params == {}
    # Fields a later contract adds are ignored, not refused.
    assert decode_request(orjson.dumps(_body(priority="high"))) == request


def test_a_response_round_trips() -> None:
    response = CommandResponse(ID, ResponseStatus.REJECTED, "out-of-range", "kw=300 above 250",
                               NOW)
    assert decode_response(response.encode()) == response
    anonymous = CommandResponse("", ResponseStatus.REJECTED, "malformed", "not JSON", NOW)
    assert decode_response(anonymous.encode()) == anonymous


@pytest.mark.parametrize(("body", "message", "has_id"), [
    (b"not json", "not JSON", False),
    (b"[1, 2]", "JSON object", False),
    (orjson.dumps(_body(id="C7F0E0B2-6A4E-4D0E-9D7A-0C6F4F0C2A11")), "lowercase UUID", False),
    (orjson.dumps(_body(id=_DROP)), "lowercase UUID", False),
    (orjson.dumps(_body(action="Set-Power")), "action must be", True),
    (orjson.dumps(_body(params=[1])), "params must be a JSON object", True),
    (orjson.dumps(_body(params={"kw": True})), "number or a string", True),
    (orjson.dumps(_body(params={"kw": None})), "number or a string", True),
    (orjson.dumps(_body(params={"KW": 1})), "param name", True),
    (orjson.dumps(_body(params={"mode": "x" * 300})), "longer than", True),
    (orjson.dumps(_body(params={f"p{i}": i for i in range(33)})), "33 params", True),
    (orjson.dumps(_body(deadline_ms=1_700_000_000)), "seconds sent by mistake", True),
    (orjson.dumps(_body(deadline_ms="soon")), "integer", True),
    (orjson.dumps(_body(deadline_ms=_DROP)), "integer", True),
    (orjson.dumps(_body(issued_by="")), "issued_by", True),
    (b" " * 20_000, "limit is 16384", False),
])
def test_malformed_requests_are_refused_with_the_id_when_readable(
        body: bytes, message: str, has_id: bool) -> None:
    with pytest.raises(MalformedCommand, match=message) as caught:
        decode_request(body)
    assert caught.value.reason == "malformed"
    assert isinstance(caught.value, PayloadError)
    assert caught.value.command_id == (ID if has_id else None)


@pytest.mark.parametrize(("body", "message"), [
    ({"id": ID, "status": "ok", "at_ms": NOW}, "status must be"),
    ({"id": "", "status": "done", "at_ms": NOW}, "only a rejection"),
    ({"id": ID, "status": "done", "reason": "Bad Reason", "at_ms": NOW}, "reason must be"),
    ({"id": ID, "status": "done", "detail": 3, "at_ms": NOW}, "detail must be"),
    ({"id": ID, "status": "done"}, "at_ms"),
])
def test_malformed_responses_are_refused(body: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedCommand, match=message):
        decode_response(orjson.dumps(body))


@given(st.binary(max_size=300))
def test_the_request_decoder_never_raises_anything_but_malformed(payload: bytes) -> None:
    try:
        request = decode_request(payload)
    except MalformedCommand:
        return
    assert decode_request(request.encode()) == request


# orjson writes integers of at most 64 bits.
_int64 = st.integers(-(2**63), 2**64 - 1)
_json = st.recursive(
    st.none() | st.booleans() | _int64 | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)


@given(st.fixed_dictionaries({}, optional={
    "id": st.sampled_from([ID, "", "x", 5]), "action": st.sampled_from(["start", "", "A", 1]),
    "params": _json, "deadline_ms": _int64 | st.floats() | st.text(max_size=3),
    "issued_by": _json}))
def test_structured_garbage_is_malformed_or_valid(body: dict[str, object]) -> None:
    try:
        request = decode_request(orjson.dumps(body))
    except MalformedCommand:
        return
    assert request.id == ID
    assert request.action == "start"
    assert decode_request(request.encode()) == request


@pytest.mark.parametrize(("changes", "reason", "detail"), [
    ({"deadline_ms": NOW}, Reason.EXPIRED, "passed 0 ms"),
    ({"deadline_ms": NOW - 5_000, "action": "launch"}, Reason.EXPIRED, "passed 5000 ms"),
    ({"action": "launch"}, Reason.UNKNOWN_ACTION, "'launch' is not an action"),
    ({"action": "set_power_kw", "params": {"kw": 1}}, Reason.NOT_ALLOWED,
     "allowed: set_battery_kw, set_level_setpoint, start, stop"),
    ({"params": {"kw": 250.01}}, Reason.OUT_OF_RANGE, "kw=250.01 is above the maximum 250"),
    ({"params": {"kw": -251}}, Reason.OUT_OF_RANGE, "kw=-251 is below the minimum -250"),
    ({"params": {}}, Reason.BAD_PARAM, "needs param 'kw'"),
    ({"params": {"kw": 1, "ramp": 2}}, Reason.BAD_PARAM, "takes no param 'ramp'"),
    ({"params": {"kw": "full"}}, Reason.BAD_PARAM, "must be a number"),
    ({"action": "start", "params": {"now": 1}}, Reason.BAD_PARAM, "takes no param 'now'"),
    ({"action": "set_level_setpoint", "params": {"m": 0.4}}, Reason.OUT_OF_RANGE, "below"),
])
def test_policy_rejections_carry_a_reason(changes: dict[str, object], reason: Reason,
                                          detail: str) -> None:
    command = decode_request(orjson.dumps(_body(**changes)))
    rejection = check(command, POLICY, NOW)
    assert rejection is not None
    assert rejection.reason is reason
    assert detail in rejection.detail


@pytest.mark.parametrize("changes", [
    {}, {"params": {"kw": 250}}, {"params": {"kw": -250}}, {"action": "start", "params": {}},
    {"action": "set_level_setpoint", "params": {}},
    {"action": "set_level_setpoint", "params": {"m": 4}},
])
def test_commands_within_policy_pass(changes: dict[str, object]) -> None:
    assert check(decode_request(orjson.dumps(_body(**changes))), POLICY, NOW) is None


def test_string_params_and_choices() -> None:
    policy = CommandPolicy.from_mapping(
        {"start": {"mode": {"kind": "string", "choices": ["island", "grid"]}}})
    ok = decode_request(orjson.dumps(_body(action="start", params={"mode": "grid"})))
    assert check(ok, policy, NOW) is None
    bad = decode_request(orjson.dumps(_body(action="start", params={"mode": "moon"})))
    rejection = check(bad, policy, NOW)
    assert rejection is not None
    assert rejection.reason is Reason.OUT_OF_RANGE
    number = decode_request(orjson.dumps(_body(action="start", params={"mode": 1})))
    rejection = check(number, policy, NOW)
    assert rejection is not None
    assert rejection.reason is Reason.BAD_PARAM


@pytest.mark.parametrize(("raw", "message"), [
    ([], "mapping of action"),
    ({"fly": {}}, "unknown actions"),
    ({"start": [1]}, "must be a mapping"),
    ({"start": {"x": 3}}, "rule is a mapping"),
    ({"start": {"x": {"maximum": 3}}}, "unknown keys"),
    ({"start": {"x": {"min": 5, "max": 1}}}, "above max"),
    ({"start": {"x": {"min": "a"}}}, "finite number"),
    ({"start": {"x": {"kind": "bool"}}}, "kind must be"),
    ({"start": {"x": {"choices": "ab"}}}, "list of strings"),
    ({"start": {"x": {"required": "no"}}}, "true or false"),
])
def test_bad_policies_are_config_errors(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CommandPolicy.from_mapping(raw)


def test_states_only_move_forward() -> None:
    s = CommandState
    assert can_move(s.PENDING, s.SENT)
    assert can_move(s.PENDING, s.ACCEPTED)  # the answer may beat the PUBACK's bookkeeping
    assert can_move(s.SENT, s.ACCEPTED)
    assert can_move(s.ACCEPTED, s.DONE)
    assert can_move(s.SENT, s.TIMED_OUT)
    assert not can_move(s.ACCEPTED, s.SENT)
    assert not can_move(s.ACCEPTED, s.ACCEPTED)
    for final in FINAL_STATES:
        assert not any(can_move(final, to) for to in s)
    assert [state_for(r) for r in ResponseStatus] == [s.ACCEPTED, s.REJECTED, s.DONE, s.FAILED]


def test_the_document_lists_every_reason_and_action() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([a-z_-]+)` \|", text, flags=re.MULTILINE))
    assert {r.value for r in Reason} <= rows
    assert set(ACTIONS) <= rows
    assert {s.value for s in CommandState} <= rows
