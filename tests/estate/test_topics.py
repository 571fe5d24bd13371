"""The topic scheme: building, parsing, identifiers and subscription filters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estate import CONTRACT_VERSION
from estate.errors import ContractError, TopicError
from estate.topics import (
    Channel,
    DeviceId,
    is_filter,
    parse_topic,
    shared,
    subscription,
    unshared,
    validate_identifier,
)

IDENTIFIERS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
DEVICE = DeviceId("demo", "textile", "main")


def test_contract_version_is_v1() -> None:
    assert CONTRACT_VERSION == "v1"


@pytest.mark.parametrize(("channel", "suffix"), [
    (Channel.TELEMETRY, "telemetry"), (Channel.STATUS, "status"),
    (Channel.COMMAND_REQUEST, "cmd/req"), (Channel.COMMAND_RESPONSE, "cmd/res"),
])
def test_device_topics(channel: Channel, suffix: str) -> None:
    topic = DEVICE.topic(channel)
    assert topic == f"estate/v1/demo/textile/main/{suffix}"
    assert parse_topic(topic).channel is channel


def test_base_name() -> None:
    assert DEVICE.base_name == "demo:textile:main:"


@given(IDENTIFIERS, IDENTIFIERS, IDENTIFIERS, st.sampled_from(list(Channel)))
def test_build_then_parse_round_trips(estate: str, facility: str, device: str,
                                      channel: Channel) -> None:
    device_id = DeviceId(estate, facility, device)
    parsed = parse_topic(device_id.topic(channel))
    assert parsed.device == device_id
    assert parsed.channel is channel


@pytest.mark.parametrize(("topic", "reason"), [
    ("", "bad-topic"),
    ("estate/v1/demo/textile/main", "bad-topic"),
    ("factory/v1/demo/textile/main/telemetry", "bad-topic"),
    ("estate/v2/demo/textile/main/telemetry", "unsupported-version"),
    ("estate/V1/demo/textile/main/telemetry", "unsupported-version"),
    ("estate/v1/demo/textile/main/telemetry/extra", "bad-topic"),
    ("estate/v1/demo/textile/main/cmd", "bad-topic"),
    ("estate/v1/demo/textile/main/cmd/ack", "bad-topic"),
    ("estate/v1/demo/textile/main/Telemetry", "bad-topic"),
    ("estate/v1/demo/textile/main/", "bad-topic"),
    ("/estate/v1/demo/textile/main/telemetry", "bad-topic"),
    ("estate/v1/+/textile/main/telemetry", "invalid-identifier"),
    ("estate/v1/demo/#/main/telemetry", "invalid-identifier"),
    ("estate/v1/demo/textile//telemetry", "invalid-identifier"),
    ("estate/v1/demo/tex tile/main/telemetry", "invalid-identifier"),
    ("estate/v1/demo/textile/main,x=1/telemetry", "invalid-identifier"),
    ("estate/v1/demo/textile/_main/telemetry", "invalid-identifier"),
    ("estate/v1/demo/textile/" + "m" * 65 + "/telemetry", "invalid-identifier"),
])
def test_bad_topics_raise_with_a_reason(topic: str, reason: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(topic)
    assert info.value.reason == reason
    assert info.value.detail
    assert str(info.value).startswith(f"{reason}: ")


def test_topic_error_is_a_contract_error() -> None:
    with pytest.raises(ContractError):
        parse_topic("nope")


@pytest.mark.parametrize("value", ["a", "A", "0", "main", "dyehouse-temp", "well_pump",
                                   "v1.2", "x" * 64, "9lives", "a-", "a."])
def test_valid_identifiers(value: str) -> None:
    assert validate_identifier(value, "device") == value


@pytest.mark.parametrize("value", ["", "-a", ".a", "_a", "x" * 65, "a b", "a/b", "a+b", "a#",
                                   "a:b", "a,b", "a=b", "a\\b", "a\nb", "main\n", "é", "$SYS",
                                   "a\x00"])
def test_invalid_identifiers(value: str) -> None:
    with pytest.raises(TopicError) as info:
        validate_identifier(value, "device")
    assert info.value.reason == "invalid-identifier"
    assert "device" in info.value.detail


def test_non_string_identifier_is_refused() -> None:
    with pytest.raises(TopicError):
        validate_identifier(5, "device")  # type: ignore[arg-type]


@given(IDENTIFIERS)
def test_every_identifier_of_the_alphabet_is_valid(value: str) -> None:
    assert validate_identifier(value, "estate") == value


@given(st.text(max_size=70))
def test_an_accepted_identifier_cannot_hide_a_delimiter(value: str) -> None:
    try:
        validate_identifier(value, "device")
    except TopicError:
        return
    assert 1 <= len(value) <= 64
    assert not set(value) & set("/+#:, =\\\"\n\r\t$")


def test_device_id_validates_each_part() -> None:
    with pytest.raises(TopicError, match="facility"):
        DeviceId("demo", "bad facility", "main")


def test_device_id_is_frozen_and_hashable() -> None:
    assert len({DEVICE, DeviceId("demo", "textile", "main")}) == 1
    with pytest.raises(AttributeError):
        DEVICE.device = "other"  # type: ignore[misc]


def test_subscription_filters() -> None:
    assert subscription(Channel.TELEMETRY) == "estate/v1/+/+/+/telemetry"
    assert subscription(Channel.STATUS, estate="demo") == "estate/v1/demo/+/+/status"
    assert (subscription(Channel.COMMAND_REQUEST, "demo", "textile", "main")
            == "estate/v1/demo/textile/main/cmd/req")


@pytest.mark.parametrize("kwargs", [{"estate": "#"}, {"facility": "a/b"}, {"device": ""},
                                    {"device": "++"}])
def test_subscription_refuses_anything_but_identifiers_and_plus(kwargs: dict[str, str]) -> None:
    with pytest.raises(TopicError):
        subscription(Channel.TELEMETRY, **kwargs)


def test_shared_subscription() -> None:
    assert (shared("ingest", subscription(Channel.TELEMETRY, estate="demo"))
            == "$share/ingest/estate/v1/demo/+/+/telemetry")


@pytest.mark.parametrize("group", ["", "a/b", "+", "#", "in gest"])
def test_shared_subscription_refuses_bad_groups(group: str) -> None:
    with pytest.raises(TopicError):
        shared(group, "estate/v1/+/+/+/telemetry")


def test_a_shared_filter_is_not_a_publish_topic() -> None:
    with pytest.raises(TopicError):
        parse_topic(shared("ingest", subscription(Channel.TELEMETRY)))


def test_filters_follow_mqtts_rules_and_shares_match_their_filter() -> None:
    assert is_filter("estate/v1/+/+/+/telemetry")
    assert is_filter("#")
    assert is_filter("$share/ingest/estate/v1/#")
    for bad in ("", "a/#/b", "a/b#", "a/+b/c", "a\0b"):
        assert not is_filter(bad), bad
    assert unshared("$share/ingest/estate/v1/#") == "estate/v1/#"
    assert unshared("estate/v1/#") == "estate/v1/#"


@pytest.mark.parametrize("topic", [
    "x" * 65_000, "estate/v1/demo/textile/" + "m" * 65_000 + "/telemetry",
    "estate/v" + "9" * 65_000 + "/demo/textile/main/telemetry",
    "estate/v1/demo/textile/main/" + "c/" * 30_000])
def test_a_topic_refusal_does_not_repeat_a_long_topic(topic: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(topic)
    assert len(info.value.detail) < 600
