"""The client's address behind reverse proxies (SWITCHBOARD_TRUSTED_PROXIES, or `switchboard serve
--forwarded-allow-ips`, as uvicorn and gunicorn name it).

Behind nginx or a load balancer every request comes from the proxy: per-address limits would
count every browser as one. When the peer is a trusted proxy, the client is read from
`Forwarded` (RFC 7239) or else `X-Forwarded-For`, walking the chain from the right and skipping
trusted proxies: the first address not trusted is the client (a client cannot pass itself off as
another by sending the header, since what it sends stands left of what the proxy appends). From
an untrusted peer the headers are ignored. Every per-address limit, the address passed to the
app's endpoints and the logs then see the browser.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Which peers may say who the client is."""

    def __init__(self, spec: Iterable[str] = ()) -> None:
        entries = [e.strip() for e in spec if e.strip()]
        self.everyone = "*" in entries
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(e, strict=False) for e in entries if e != "*"
        )

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        if address is None:
            return False
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_of(self, scope: Mapping[str, Any]) -> str | None:
        """The client's address for `scope`, if a trusted proxy says who it is; else None."""
        peer = scope.get("client")
        if not self or not peer or not self.trusts(peer[0]):
            return None
        chain = _forwarded_for(scope.get("headers") or ())
        for address in reversed(chain):
            if not self.trusts(address):
                return address
        return chain[0] if chain else None

    def resolve(self, scope: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """`scope` with `client` set to the forwarded client (a copy), or `scope` as it is."""
        client = self.client_of(scope)
        if client is None:
            return scope
        return {**scope, "client": (client, 0)}


def _forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The forwarded chain, client first: `Forwarded: for=` if present, else X-Forwarded-For."""
    forwarded: list[str] = []
    x_forwarded: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == b"forwarded":
            for element in value.decode("latin-1").split(","):
                for pair in element.split(";"):
                    field, _, found = pair.strip().partition("=")
                    if field.lower() == "for" and found:
                        forwarded.append(_host(found.strip().strip('"')))
        elif key == b"x-forwarded-for":
            x_forwarded.extend(_host(a.strip()) for a in value.decode("latin-1").split(",") if a.strip())
    return forwarded or x_forwarded


def _host(node: str) -> str:
    """An address without its port or brackets: `[2001:db8::1]:4711` -> `2001:db8::1`."""
    if node.startswith("["):
        return node[1:].partition("]")[0]
    if node.count(":") == 1:
        return node.partition(":")[0]
    return node
