"""The sample customer tenants: three fixed ones the shipped config names, then generated ones."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

#: The one multi-tenant application every sandbox tenant has consented to.
SAMPLE_CLIENT_ID = "0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"

_GENERATED_NAMESPACE = uuid.UUID("5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c00")


@dataclass(frozen=True, slots=True)
class SampleTenant:
    """A customer tenant as the config refers to it."""

    tenant_id: str
    key: str
    name: str
    domain: str


SAMPLE_TENANTS: tuple[SampleTenant, ...] = (
    SampleTenant(
        "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01",
        "sakura-seisakusho",
        "株式会社さくら製作所",
        "sakura.example.jp",
    ),
    SampleTenant(
        "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c02",
        "midori-shoji",
        "緑商事株式会社",
        "midori.example.jp",
    ),
    SampleTenant(
        "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c03",
        "aozora-design",
        "合同会社あおぞらデザイン",
        "aozora.example.jp",
    ),
)

# Device platforms of the fixed tenants, apart from the Windows 10/11 split.
_FIXED_FLEETS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (12, ("macOS",)),
    (8, ()),
    (5, ("Linux",)),
)

MAX_TENANTS = 1000


def sample_tenants(count: int) -> list[SampleTenant]:
    """The first `count` tenants: the fixed three, then "サンプル企業 0004" and so on."""
    if not 1 <= count <= MAX_TENANTS:
        raise ValueError(f"tenants must be between 1 and {MAX_TENANTS}, not {count}")
    tenants = list(SAMPLE_TENANTS[:count])
    for number in range(len(SAMPLE_TENANTS) + 1, count + 1):
        tenants.append(
            SampleTenant(
                str(uuid.uuid5(_GENERATED_NAMESPACE, f"sample-tenant-{number:04d}")),
                f"sample-{number:04d}",
                f"サンプル企業 {number:04d}",
                f"sample{number:04d}.example.jp",
            )
        )
    return tenants


def fleet_platforms(index: int, rng: random.Random) -> list[str]:
    """The osPlatform of each device of the tenant at `index` (0-based), Windows first."""
    if index < len(_FIXED_FLEETS):
        size, others = _FIXED_FLEETS[index]
    else:
        size = rng.randint(3, 25)
        others = tuple(
            platform
            for platform, chance in (("macOS", 0.2), ("Linux", 0.15))
            if rng.random() < chance
        )
    windows = [
        rng.choice(("Windows10", "Windows11", "Windows11")) for _ in range(size - len(others))
    ]
    return windows + list(others)
