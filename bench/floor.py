"""The raw floor: the same Graph pages through `json.loads` and one bulk INSERT per tenant.

The pages are downloaded once beforehand (untimed) into one file per tenant, a page per line,
so the timed part is only parsing and inserting, and memory stays one tenant's pages.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sandbox_process import SandboxInfo
from sqlalchemy import Engine, insert, select

from edrtrial.models import Alert, Tenant
from edrtrial.sandbox import SAMPLE_CLIENT_ID
from edrtrial.timeutil import parse_iso, utcnow

ALERTS = "/v1.0/security/alerts_v2"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@dataclass(frozen=True, slots=True)
class Download:
    """Each tenant's pages on disk, and what the download cost (for context, not the floor)."""

    files: dict[str, Path]
    pages: int
    alerts: int
    bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class FloorResult:
    """Rows parsed and inserted, and the time of each step."""

    rows: int
    parse_seconds: float
    insert_seconds: float

    @property
    def seconds(self) -> float:
        """Parse plus insert (the commit included)."""
        return self.parse_seconds + self.insert_seconds


def download(sandbox: SandboxInfo, page_size: int, directory: Path) -> Download:
    """GET every tenant's alerts as the connector pages them, one file of pages per tenant."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    pages = alerts = size = 0
    started = time.perf_counter()
    verify = ssl.create_default_context(cafile=str(sandbox.ca_path))
    secret = sandbox.app_secret.read_text(encoding="utf-8").strip()  # good in every tenant
    with httpx.Client(base_url=sandbox.base_url, verify=verify, timeout=60) as http:
        for tenant in sandbox.tenants:
            token = http.post(
                f"/{tenant.tenant_id}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": SAMPLE_CLIENT_ID,
                    "client_secret": secret,
                    "scope": GRAPH_SCOPE,
                },
            )
            token.raise_for_status()
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            path = files[tenant.tenant_id] = directory / f"{tenant.tenant_id}.pages"
            with path.open("wb") as out:
                url: str | None = f"{ALERTS}?$top={page_size}"
                while url is not None:
                    response = http.get(url, headers=headers)
                    response.raise_for_status()
                    body = response.content
                    out.write(body + b"\n")
                    page = json.loads(body)
                    pages, alerts, size = pages + 1, alerts + len(page["value"]), size + len(body)
                    url = page.get("@odata.nextLink")
    return Download(files, pages, alerts, size, time.perf_counter() - started)


def sample_alerts(files: dict[str, Path], count: int) -> list[dict[str, Any]]:
    """The first `count` Graph alerts from the downloaded pages (for playbook facts)."""
    found: list[dict[str, Any]] = []
    for path in files.values():
        for line in path.read_bytes().splitlines():
            found.extend(json.loads(line)["value"])
            if len(found) >= count:
                return found[:count]
    return found


def _row(tenant_id: int, item: dict[str, Any], now: Any) -> dict[str, Any]:
    """The columns edrtrial fills for an alert, straight from Graph's JSON."""
    devices = [
        e for e in item.get("evidence") or () if e.get("@odata.type", "").endswith("deviceEvidence")
    ]
    created, updated = item.get("createdDateTime"), item.get("lastUpdateDateTime")
    return {
        "tenant_id": tenant_id,
        "source": "defender",
        "source_id": item["id"],
        "incident_source_id": item.get("incidentId"),
        "title": item.get("title") or "",
        "description": item.get("description") or "",
        "severity": item.get("severity") or "unknown",
        "status": item.get("status") or "unknown",
        "category": (item.get("category") or "").lower(),
        "detection_source": item.get("detectionSource") or "",
        "service_source": item.get("serviceSource") or "",
        "mitre_techniques": item.get("mitreTechniques") or [],
        "device_source_ids": [d.get("mdeDeviceId") for d in devices],
        "device_names": [d.get("deviceDnsName") or "" for d in devices],
        "created_at": parse_iso(created) if created else None,
        "last_update_at": parse_iso(updated) if updated else None,
        "raw": item,
        "ingested_at": now,
    }


def _pages(path: Path) -> Iterator[bytes]:
    yield from path.read_bytes().splitlines()


def _items(body: bytes) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(body)["value"]
    return items


def run_floor(engine: Engine, files: dict[str, Path]) -> FloorResult:
    """Parse each tenant's pages and insert them with one executemany, all in one commit."""
    with engine.connect() as conn:
        ids = dict(conn.execute(select(Tenant.external_id, Tenant.id)).tuples().all())
    rows = 0
    parse = insert_time = 0.0
    now = utcnow()
    with engine.connect() as conn:
        for tenant, path in files.items():
            bodies = list(_pages(path))  # read from disk: not timed
            started = time.perf_counter()
            batch = [_row(ids[tenant], item, now) for b in bodies for item in _items(b)]
            parsed = time.perf_counter()
            conn.execute(insert(Alert), batch)
            insert_time += time.perf_counter() - parsed
            parse += parsed - started
            rows += len(batch)
        started = time.perf_counter()
        conn.commit()
        insert_time += time.perf_counter() - started
    return FloorResult(rows, parse, insert_time)
