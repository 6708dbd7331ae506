"""The client's address, as the throttle keys on it.

Behind a reverse proxy (an ingress, a load balancer) every request comes from the proxy's
address; the proxy names the real client in ``X-Forwarded-For``. That header is believed
only from the proxies the operator lists (``CVAT_RAY_SERVER__TRUSTED_PROXIES``): the
address is found by walking the header from the right, past every trusted hop, to the first
address that is not a trusted proxy. Anything a client writes into the header itself lies
left of that point and is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


@lru_cache(maxsize=8)
def parse_proxies(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDRs; raises ValueError on anything else."""
    networks = []
    for item in (i.strip() for i in text.split(",")):
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "1.2.3.4:5678"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The client's address: ``peer`` (the TCP peer) unless it is a trusted proxy, then the
    right-most ``X-Forwarded-For`` entry that is not one (all header values in order)."""
    hops = [item for value in forwarded_for for item in value.split(",") if item.strip()]
    current = _address(peer) if peer else None
    if current is None:
        return peer or UNKNOWN
    while trusted and hops and any(current in net for net in trusted):
        previous = _address(hops.pop())
        if previous is None:
            break  # a garbled hop: the last trusted proxy is as far as we can see
        current = previous
    return str(current)
