"""Where a credential may travel: over TLS, or without it only inside this machine.

Bearer tokens for Defender carry Machine.Isolate and Machine.Offboard; an SMTP password
opens the programme's mailbox. Sent in cleartext, anyone on the path could take them. A
loopback address (the sandbox, a local relay) never leaves the machine, so it may go
without TLS. Config models call these so a wrong value is refused at start-up, naming the
key, rather than sent once.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), with or without [ ]."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def require_https(url: str) -> str:
    """`url` without a trailing slash when it is https://, or http:// to a loopback host.

    Raises ValueError (pydantic shows it under the key) for anything else.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url.rstrip("/")
    if parts.scheme == "http":
        raise ValueError(
            "must be an https:// URL: a bearer token would cross the network in cleartext "
            "(http:// is accepted only for 127.0.0.1, ::1 or localhost)"
        )
    raise ValueError("must be an https:// URL")
