"""Is a resource's host this host? Decided by resolving names, never by comparing strings.

Host names in the catalog need not match ``socket.gethostname()`` (observed: ``RESC_LOC`` was
``localhost`` on a server whose hostname was ``vm``). A resource host is local when it is one of
the administrator's ``local_host_names``, when it resolves only to loopback addresses, or when
it resolves to an address this host's own names resolve to. Anything that cannot be resolved
is not local: the run is then dispatched to it and iRODS reports a clear error if that fails.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from functools import lru_cache

log = logging.getLogger(__name__)


@lru_cache(maxsize=64)
def _addresses(name: str) -> frozenset[str]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return frozenset()
    return frozenset(str(info[4][0]).split("%", 1)[0] for info in infos)


def own_names() -> set[str]:
    names = {socket.gethostname()}
    try:
        names.add(socket.getfqdn())
    except OSError:  # pragma: no cover - resolver trouble
        pass
    return {n.lower() for n in names if n}


def own_addresses() -> frozenset[str]:
    found: set[str] = set()
    for name in own_names():
        found |= _addresses(name)
    return frozenset(found)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_local_host(host: str, extra_names: Iterable[str] = ()) -> bool:
    """True when ``host`` (a resource's ``RESC_LOC``) designates the machine running this code."""
    name = (host or "").strip().lower()
    if not name:
        return False
    if name in {n.strip().lower() for n in extra_names}:
        return True
    if name in own_names():
        return True
    addresses = _addresses(name)
    if not addresses:
        log.debug("host %s does not resolve; treating it as another host", host)
        return False
    if all(_is_loopback(a) for a in addresses):
        return True
    return bool(addresses & own_addresses())
