"""Targets: link-local, loopback, private and reserved addresses refused with the reason
(by literal address and after resolving a name), unless the settings allow loopback or
private ones; link-local never."""

from __future__ import annotations

import pytest

from dispatch.webhooks.targets import (
    TargetPolicy,
    TargetRefused,
    TargetUnresolved,
    check_url,
    origin,
)

STRICT = TargetPolicy()
LOOPBACK = TargetPolicy(allow_loopback=True)


def fixed(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(("url", "said"), [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
    ("http://[::1]/hook", "::1 is a loopback address"),
    ("http://10.1.2.3/hook", "10.1.2.3 is a private address"),
    ("http://192.168.1.20/hook", "is a private address"),
    ("http://0.0.0.0/hook", "is a loopback address"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://224.0.0.1/", "reserved"),
])
def test_literal_addresses_are_refused_with_the_reason(url: str, said: str) -> None:
    with pytest.raises(TargetRefused, match="refused") as refused:
        check_url(url, STRICT)
    assert said in refused.value.reason


def test_a_name_that_resolves_to_loopback_is_refused_after_resolution() -> None:
    with pytest.raises(TargetRefused) as refused:
        check_url("http://hooks.example.test/x", STRICT, fixed("93.184.215.14", "127.0.0.1"))
    assert refused.value.reason == (
        "http://hooks.example.test refused: hooks.example.test resolves to 127.0.0.1, a "
        "loopback address (DISPATCH_WEBHOOKS__ALLOW_LOOPBACK allows it)")


def test_localhost_resolved_by_the_system_is_refused() -> None:
    with pytest.raises(TargetRefused, match=r"localhost resolves to .*loopback"):
        check_url("http://localhost:9/hook", STRICT)


def test_loopback_allowed_by_the_settings_link_local_never() -> None:
    target = check_url("http://localhost:9/hook", LOOPBACK)
    assert target.host == "localhost"
    assert target.port == 9
    with pytest.raises(TargetRefused, match="link-local"):
        check_url("http://169.254.169.254/", TargetPolicy(True, True))
    with pytest.raises(TargetRefused, match="private"):
        check_url("http://10.0.0.1/", LOOPBACK)
    assert check_url("http://10.0.0.1/", TargetPolicy(allow_private=True)).address == "10.0.0.1"


def test_a_public_name_is_pinned_to_its_checked_address() -> None:
    target = check_url("https://hooks.example.test/x?token=s", STRICT, fixed("93.184.215.14"))
    assert (target.scheme, target.host, target.port, target.address) == (
        "https", "hooks.example.test", 443, "93.184.215.14")


@pytest.mark.parametrize("url", ["ftp://example.test/", "http:///nohost",
                                 "http://user:pw@93.184.215.14/", "http://[::1/"])
def test_urls_that_are_no_webhook_target(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_url(url, STRICT, fixed("93.184.215.14"))


def test_a_name_that_does_not_resolve() -> None:
    with pytest.raises(TargetUnresolved):
        check_url("http://no-such-host.invalid/", STRICT)


def test_origin_keeps_tokens_out_of_logs() -> None:
    assert origin("https://hooks.example.test:8443/services/T0/B0/secret?x=1") == (
        "https://hooks.example.test:8443")
