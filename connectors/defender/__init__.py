"""Microsoft Defender for Business connector (Graph security + Defender for Endpoint APIs)."""

from edrtrial.connectors.defender.config import DefenderSettings
from edrtrial.connectors.defender.connector import DefenderForBusinessConnector

__all__ = ["DefenderForBusinessConnector", "DefenderSettings"]
