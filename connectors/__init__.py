"""EDR connectors, found by name through the `edrtrial.connectors` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from edrtrial.connectors.base import Connector
from edrtrial.errors import ConfigError

GROUP = "edrtrial.connectors"


@cache
def connector_class(name: str) -> type[Connector]:
    """The connector class registered under `name`, or a ConfigError naming the known ones."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(f"unknown connector {name!r} (known: {known})")
    cls: type[Connector] = found[name].load()
    return cls
