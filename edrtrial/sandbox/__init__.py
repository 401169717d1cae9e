"""A local HTTPS stand-in for Entra ID, Microsoft Graph security and Defender for Endpoint.

Runs and tests edrtrial with no Microsoft account: three fixed sample tenants (more can be
generated), devices, alerts that keep arriving, machine actions that take time, throttling.
"""

from edrtrial.sandbox.app import build_app
from edrtrial.sandbox.catalogue import ALERT_KINDS, AlertKind
from edrtrial.sandbox.credentials import ensure_secrets
from edrtrial.sandbox.ratelimit import Budgets
from edrtrial.sandbox.samples import SAMPLE_CLIENT_ID, SAMPLE_TENANTS, SampleTenant, sample_tenants
from edrtrial.sandbox.server import SandboxServer
from edrtrial.sandbox.tls import CertPaths, ensure_certificates
from edrtrial.sandbox.world import SandboxWorld

__all__ = [
    "ALERT_KINDS",
    "SAMPLE_CLIENT_ID",
    "SAMPLE_TENANTS",
    "AlertKind",
    "Budgets",
    "CertPaths",
    "SampleTenant",
    "SandboxServer",
    "SandboxWorld",
    "build_app",
    "ensure_certificates",
    "ensure_secrets",
    "sample_tenants",
]
