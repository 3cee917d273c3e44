"""Offline, measured: every attempt to reach the network is seen, recorded and, unless the
config asked for it, refused.

Python's audit hooks (PEP 578) see `socket.getaddrinfo`, `socket.connect` and
`socket.sendto` from any code in the process: agentd's own, a library's, a skill's tool.
Loopback and Unix sockets pass unrecorded. Anything else passes only when its host is one
the config names (the MQTT broker, Home Assistant); every other attempt raises
`NetworkRefused` (a PermissionError, so callers treat it as the failed connection it is) and
is recorded. `agentd status` shows the counts and the last destinations, and `offline`
there comes from this record, not from an environment variable.

An audit hook cannot be removed, so `install()` adds one hook per process; `allow()`
changes what it lets through (a reload).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from collections import deque
from typing import Any, Iterable
from urllib.parse import urlsplit

_EVENTS = frozenset({"socket.getaddrinfo", "socket.connect", "socket.sendto", "socket.gethostbyname"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", ""})


class NetworkRefused(PermissionError):
    """A connection agentd refused because the config did not ask for it."""

    def __init__(self, destination: str):
        super().__init__(f"agentd is offline: a connection to {destination!r} was refused "
                         "(only the MQTT broker and Home Assistant named in the config may be reached)")
        self.destination = destination


def configured_hosts(settings: Any) -> set[str]:
    """The hosts the config asks agentd to reach: the MQTT broker, Home Assistant, the MCP
    servers reached by URL, and a remote model engine."""
    home = getattr(settings, "home", None)
    hosts = {getattr(getattr(home, "mqtt", None), "host", None)}
    urls = [getattr(getattr(home, "hass", None), "url", None)]
    urls += [server.url for server in (getattr(settings, "mcp_servers", None) or {}).values() if server.enabled]
    model = getattr(settings, "model", None)
    if getattr(model, "backend", "mlx") == "openai":
        urls.append(model.remote.base_url)
    hosts.update(urlsplit(url).hostname for url in urls if url)
    return {h.lower() for h in hosts if h}


class NetGuard:
    """The record of network attempts of this process, and the rule that refuses them."""

    def __init__(self, allowed: Iterable[str] = (), keep: int = 10):
        self.allowed: frozenset[str] = frozenset()
        self.allowed_addresses: frozenset[str] | None = None  # None: not resolved yet
        self.attempts = 0  # beyond loopback, allowed or not
        self.refused = 0
        self.last: deque[dict] = deque(maxlen=keep)
        self.installed = False
        self._lock = threading.Lock()
        self._inside = threading.local()  # resolving an allowed host from inside the hook
        self.allow(allowed)

    def allow(self, hosts: Iterable[str]) -> None:
        """Let these hosts (names or addresses) through from now on."""
        self.allowed = frozenset(h.lower() for h in hosts if h)
        self.allowed_addresses = None  # resolved again when first needed

    def install(self) -> "NetGuard":
        """Start watching this process (once: an audit hook stays for the process's life)."""
        if not self.installed:
            sys.addaudithook(self._hook)
            self.installed = True
        return self

    def status(self) -> dict:
        """`offline` and the record, for `agentd status`."""
        with self._lock:
            reached = [a for a in self.last if a["outcome"] == "allowed"]
            return {
                "offline": self.installed and self.attempts == self.refused,
                "network": {"attempts": self.attempts, "refused": self.refused, "allowed_hosts": sorted(self.allowed),
                            "last": list(self.last), "watching": self.installed,
                            **({"reached": sorted({a["to"] for a in reached})} if reached else {})},
            }

    # -- the hook -----------------------------------------------------------------------------

    def _hook(self, event: str, args: tuple) -> None:
        if event not in _EVENTS or getattr(self._inside, "busy", False):
            return
        host, port = _destination(event, args)
        if host is None or _is_local(host):
            return
        allowed = self._allowed(host)
        destination = f"{host}:{port}" if port not in (None, 0) else str(host)
        with self._lock:
            self.attempts += 1
            self.refused += not allowed
            self.last.append({"to": destination, "outcome": "allowed" if allowed else "refused",
                              "by": threading.current_thread().name, "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if not allowed:
            raise NetworkRefused(destination)

    def _allowed(self, host: str) -> bool:
        host = host.lower()
        if host in self.allowed:
            return True
        if not _is_address(host) or not self.allowed:
            return False
        if self.allowed_addresses is None:  # a connect to the address a configured name resolved to
            self.allowed_addresses = frozenset(self._resolve(self.allowed))
        return host in self.allowed_addresses

    def _resolve(self, names: Iterable[str]) -> set[str]:
        self._inside.busy = True
        try:
            found: set[str] = set()
            for name in names:
                try:
                    found.update(str(info[4][0]).lower() for info in socket.getaddrinfo(name, None))
                except OSError:
                    pass
            return found
        finally:
            self._inside.busy = False


def _destination(event: str, args: tuple) -> tuple[Any, Any]:
    """The (host, port) an audit event is about; (None, None) for a Unix socket or no host."""
    if event == "socket.getaddrinfo":
        host, port = args[0], args[1]
    elif event == "socket.gethostbyname":
        host, port = args[0], None
    else:
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", None) or not isinstance(address, tuple):
            return None, None
        host, port = address[0], address[1]
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return host, port


def _is_local(host: Any) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard, for a server's bind
    name = str(host).lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        return False
