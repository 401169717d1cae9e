"""CyCraft AIR connector, driven by a configurable REST mapping (CyCraft's API is unpublished)."""

from edrtrial.connectors.cycraft.config import CyCraftSettings
from edrtrial.connectors.cycraft.connector import CyCraftAdapter

__all__ = ["CyCraftAdapter", "CyCraftSettings"]
