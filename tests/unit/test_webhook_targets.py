"""A merchant's webhook may point only at public http(s) addresses, unless the bank's
operator allows the host: the bank never posts into its own network for a merchant."""

import asyncio

import pytest

from bank.webhook_targets import check_webhook_url
from rail_protocol.errors import RailError

PUBLIC_NAMES = {"shop.example.com": ["93.184.215.14"], "v6.example.com": ["2606:4700::1111"],
                "rebind.example.com": ["93.184.215.14", "10.0.0.5"],
                "localhost": ["127.0.0.1", "::1"], "2130706433": ["127.0.0.1"]}


async def fake_dns(host: str, port: int) -> list[str]:
    """The answers a resolver would give for these names (no network in a unit test)."""
    if host not in PUBLIC_NAMES:
        raise OSError("Name or service not known")
    return PUBLIC_NAMES[host]


def check(url: object, allowed: tuple[str, ...] = ()):
    return asyncio.run(check_webhook_url(url, allowed, resolver=fake_dns))


def refusal(url: object, allowed: tuple[str, ...] = ()) -> str:
    with pytest.raises(RailError) as refused:
        check(url, allowed)
    assert refused.value.code == "invalid_field"
    return refused.value.message


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",     # a cloud's metadata service
    "http://10.1.2.3/hook", "http://192.168.0.1/", "http://172.16.0.1/",
    "http://127.0.0.1:8700/v1/banks", "http://[::1]/", "http://0.0.0.0/",
    "http://localhost/", "http://2130706433/",       # names for loopback
    "https://rebind.example.com/hook",               # one private answer among public ones
    "http://[fe80::1%25eth0]/",
])
def test_a_webhook_into_a_private_network_is_refused(url):
    assert "public address" in refusal(url)


@pytest.mark.parametrize("url", [
    "ftp://shop.example.com/hook", "file:///etc/passwd", "gopher://shop.example.com/",
    "javascript:alert(1)", "http:///nohost", "http://user:pw@shop.example.com/",
    "https://shop.example.com:99999/", "https://" + "a" * 300 + ".com/", "", 42, None,
])
def test_only_a_plain_http_or_https_url_with_a_host_is_a_webhook(url):
    refusal(url)


def test_a_host_that_does_not_resolve_is_refused():
    assert "does not resolve" in refusal("https://nowhere.invalid/hook")


def test_a_public_host_is_reached_at_the_address_that_was_checked():
    target = check("https://shop.example.com:8443/hooks/1?x=2")
    assert target.connect_url == "https://93.184.215.14:8443/hooks/1?x=2"
    assert target.host == "shop.example.com"
    assert check("https://v6.example.com/h").connect_url == "https://[2606:4700::1111]/h"


def test_the_operator_may_allow_a_host_in_its_own_network():
    target = check("http://127.0.0.1:9/hook", allowed=("127.0.0.1",))
    assert target.connect_url == "http://127.0.0.1:9/hook"
    assert "public address" in refusal("http://localhost:9/hook", allowed=("127.0.0.1",))
