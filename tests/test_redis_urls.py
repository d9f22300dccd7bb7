"""REDIS_URL forms: every connection made from a URL keeps its user, password and TLS."""

from __future__ import annotations

import pytest

from switchboard.exceptions import ConfigurationError
from switchboard.layers import urls


@pytest.mark.parametrize(
    ("url", "kind", "username", "password", "tls"),
    [
        ("redis+cluster://h1:7000,h2:7001", "cluster", None, None, False),
        ("redis+cluster://:secret@h1:7000", "cluster", None, "secret", False),
        ("redis+cluster://app:s%40cret@h1:7000", "cluster", "app", "s@cret", False),
        ("rediss+cluster://app:secret@h1:7000", "cluster", "app", "secret", True),
        ("redis+sentinel://app:secret@s1:26379/mymaster/2", "sentinel", "app", "secret", False),
        ("rediss+sentinel://:secret@s1:26379/mymaster", "sentinel", None, "secret", True),
    ],
)
def test_credentials_and_tls_reach_every_node(
    url: str, kind: str, username: str | None, password: str | None, tls: bool
) -> None:
    target = urls.parse(url)
    assert (target.kind, target.username, target.password, target.tls) == (kind, username, password, tls)
    expected = {"username": username, "password": password} | ({"ssl": True} if tls else {})
    assert urls.connection_kwargs(target) == expected


def test_a_plain_url_is_left_to_redis_py() -> None:
    target = urls.parse("rediss://app:secret@h:6380/1")
    assert target.kind == "single" and target.url == "rediss://app:secret@h:6380/1"


@pytest.mark.parametrize("url", ["redis+cluster://nohostport", "redis+sentinel://h:1"])
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        urls.parse(url)
