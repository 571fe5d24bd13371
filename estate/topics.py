"""The MQTT topic scheme, contract v1.

Identity lives in the topic so that the broker's ACLs can confine a device to its own
topics::

    estate/v1/{estate}/{facility}/{device}/telemetry   SenML pack, QoS 1
    estate/v1/{estate}/{facility}/{device}/status      retained birth / Last Will, QoS 1
    estate/v1/{estate}/{facility}/{device}/cmd/req     command request (MQTT 5), QoS 1
    estate/v1/{estate}/{facility}/{device}/cmd/res     command response, QoS 1

Identifiers are 1-64 characters of ``[A-Za-z0-9_.-]`` starting with a letter or digit:
nothing a wildcard, a line-protocol delimiter or a path separator could hide in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from estate import CONTRACT_VERSION
from estate.bounded import TOPIC_CHARS, brief, cut
from estate.errors import TopicError

ROOT: Final = "estate"
IDENTIFIER_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
"""What an estate, facility or device identifier may be (also checked by the web API)."""
_IDENT = re.compile(IDENTIFIER_PATTERN)


class Channel(Enum):
    """What a device topic carries."""

    TELEMETRY = "telemetry"
    STATUS = "status"
    COMMAND_REQUEST = "cmd/req"
    COMMAND_RESPONSE = "cmd/res"


_CHANNELS: Final = {c.value: c for c in Channel}


def validate_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a valid estate, facility or device identifier."""
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise TopicError("invalid-identifier",
                         f"{what} {brief(value)} is not 1-64 of [A-Za-z0-9_.-]")
    return value


@dataclass(frozen=True, slots=True)
class DeviceId:
    """Who a device is: the estate, the facility (tenant) and the device itself."""

    estate: str
    facility: str
    device: str

    def __post_init__(self) -> None:
        validate_identifier(self.estate, "estate")
        validate_identifier(self.facility, "facility")
        validate_identifier(self.device, "device")

    def topic(self, channel: Channel) -> str:
        """The topic on which this device publishes or receives ``channel``."""
        return (
            f"{ROOT}/{CONTRACT_VERSION}/{self.estate}/{self.facility}/{self.device}/"
            f"{channel.value}"
        )

    @property
    def base_name(self) -> str:
        """The SenML base name that a pack may carry to restate this identity."""
        return f"{self.estate}:{self.facility}:{self.device}:"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    device: DeviceId
    channel: Channel


def parse_topic(topic: str) -> DeviceTopic:
    """Parse a concrete (publish) topic of the scheme; raise ``TopicError`` otherwise."""
    parts = topic.split("/")
    if len(parts) < 6 or parts[0] != ROOT:
        raise TopicError("bad-topic", f"{cut(topic, TOPIC_CHARS)!r} is not "
                         "estate/v1/<estate>/<facility>/<device>/<channel>")
    if parts[1] != CONTRACT_VERSION:
        raise TopicError("unsupported-version",
                         f"contract version {brief(parts[1])} in {cut(topic, TOPIC_CHARS)!r}")
    channel = _CHANNELS.get("/".join(parts[5:]))
    if channel is None:
        raise TopicError("bad-topic", f"unknown channel {cut('/'.join(parts[5:]))!r} in "
                         f"{cut(topic, TOPIC_CHARS)!r}")
    return DeviceTopic(DeviceId(parts[2], parts[3], parts[4]), channel)


def subscription(channel: Channel, estate: str = "+", facility: str = "+",
                 device: str = "+") -> str:
    """A subscription filter for ``channel``; each identifier may be the ``+`` wildcard."""
    for value, what in ((estate, "estate"), (facility, "facility"), (device, "device")):
        if value != "+":
            validate_identifier(value, what)
    return f"{ROOT}/{CONTRACT_VERSION}/{estate}/{facility}/{device}/{channel.value}"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: the broker splits messages among the group."""
    validate_identifier(group, "share group")
    return f"$share/{group}/{topic_filter}"


def unshared(topic_filter: str) -> str:
    """The filter a shared subscription's messages match (``$share/group/filter``)."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else ""
    return topic_filter


def is_filter(topic_filter: str) -> bool:
    """MQTT's rules for a filter: not empty, ``#`` only as the last level, ``+`` alone."""
    levels = unshared(topic_filter).split("/")
    return bool(topic_filter) and "\0" not in topic_filter and all(
        ("#" not in level or (level == "#" and i == len(levels) - 1))
        and ("+" not in level or level == "+") for i, level in enumerate(levels))
