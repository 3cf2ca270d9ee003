"""The client's address: the peer, or behind trusted proxies the address they name."""

from __future__ import annotations

import functools
import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: list[str]) -> list[Network]:
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip()]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def peer_is_trusted(remote_addr: str | None, trusted: list[Network]) -> bool:
    """Whether the direct peer is one of the trusted proxies (whose forwarding headers count)."""
    peer = _ip(remote_addr or "")
    return peer is not None and any(peer.version == net.version and peer in net for net in trusted)


@functools.lru_cache(maxsize=4096)
def _peer_text(remote_addr: str) -> str:
    """The peer's address as :func:`client_ip` writes it (the same few peers come again and again)."""
    peer = _ip(remote_addr)
    return str(peer) if peer is not None else remote_addr or "unknown"


def client_ip(remote_addr: str | None, headers, trusted: list[Network]) -> str:
    """The client's address. Forwarding headers count only when the peer is a trusted proxy.

    ``X-Forwarded-For`` is read from the right: each hop that is itself a trusted proxy passes the
    question on to the address it received the request from; the first untrusted hop is the client.
    So a client cannot choose its identity by sending its own ``X-Forwarded-For``: the trusted proxy
    appends the real peer after whatever the client wrote.
    """
    if not trusted:
        return _peer_text(remote_addr or "")
    peer = _ip(remote_addr or "")
    if peer is None:
        return remote_addr or "unknown"

    def is_trusted(address) -> bool:
        return any(address.version == net.version and address in net for net in trusted)

    if not trusted or not is_trusted(peer):
        return str(peer)
    hops = [h for value in headers.getlist("X-Forwarded-For") for h in value.split(",") if h.strip()]
    if hops:
        current = peer
        for hop in reversed(hops):
            address = _ip(hop)
            if address is None:  # garbage from further out: trust stops at the last good hop
                return str(current)
            if not is_trusted(address):
                return str(address)
            current = address
        return str(current)
    real = _ip(headers.get("X-Real-IP", ""))
    return str(real) if real is not None else str(peer)
