"""The sandbox's sample programme, seeded into an empty store so `make run` shows the whole
flow at once, whatever day it runs: its dates count from that day.

A sample cohort (サンプル第1期, EDR course) with one company per sandbox tenant, each with its
application (a plausible identity: a 法人番号 whose check digit holds, an address in Tokyo,
an SME by its industry's row) and pre-diagnosis, its journey walked step by step and audited
(actor "sandbox"), its tenant consented and verified through the programme's app:

- sakura-seisakusho: in its trial (started 70 days ago, 92 days), undecided.
- midori-shoji: its trial ended 19 days ago undecided, so its devices are offboarded.
- aozora-design: in its trial, continuing with the vendor; English; automatic isolation.
- the sandbox's further tenants (sample-0004 ...): in their trial, started 30 days ago.

The companies go in through the same import as an old config file's (`companies.py`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.config import CompanyConfig, ProgrammeConfig
from edrtrial.models import Application, Cohort, Company, PredecessorRecord, PreDiagnosis
from edrtrial.programme.companies import import_companies
from edrtrial.timeutil import JST, jst_date

log = logging.getLogger(__name__)

SAMPLE_ACTOR = "sandbox"
SAMPLE_COHORT = "sample-1"
SAMPLE_COHORT_NAME = "サンプル第1期"
SAMPLE_CAPACITY = 50


class SampleTenantLike(Protocol):
    """A sandbox tenant, as far as the programme needs to know it."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def domain(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _Sample:
    """What the sample programme says of one company beyond its tenant."""

    contact_name: str
    contact_email: str
    language: str
    planned_seats: int
    started_days_ago: int
    decision: str = "undecided"
    auto_isolation: bool = False
    representative: str = "代表取締役 鈴木 一郎"
    address: str = "東京都千代田区丸の内1-1-1"
    industry: str = "その他"
    capital_yen: int = 10_000_000
    employees: int = 12
    phone: str = "03-0000-1000"
    antivirus: str = "Microsoft Defender Antivirus"


_FIXED: dict[str, _Sample] = {
    "sakura-seisakusho": _Sample(
        "山田 太郎",
        "it@sakura.example.jp",
        "ja",
        15,
        70,
        representative="代表取締役 桜井 誠",
        address="東京都大田区大森北1-2-3",
        industry="製造業",
        capital_yen=30_000_000,
        employees=45,
        phone="03-0000-1001",
    ),
    "midori-shoji": _Sample(
        "佐藤 花子",
        "soumu@midori.example.jp",
        "ja",
        10,
        110,
        representative="代表取締役 緑川 浩",
        address="東京都中央区日本橋2-3-4",
        industry="卸売業",
        capital_yen=20_000_000,
        employees=28,
        phone="03-0000-1002",
    ),
    "aozora-design": _Sample(
        "Emily Clark",
        "office@aozora.example.jp",
        "en",
        6,
        40,
        decision="continue",
        auto_isolation=True,
        representative="代表社員 青木 空",
        address="東京都渋谷区神南1-5-6",
        industry="サービス業",
        capital_yen=5_000_000,
        employees=8,
        phone="03-0000-1003",
        antivirus="ESET Endpoint Security",
    ),
}
TRIAL_DAYS = 92


def check_digit(base: str) -> int:
    """The 法人番号's check digit (its first digit) for the 12 digits after it (国税庁):
    9 − (Σ digit × weight mod 9), counting positions from the right, weight 1 at odd
    positions and 2 at even ones."""
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(reversed(base), start=1))
    return 9 - total % 9


def _corporate_number(index: int) -> str:
    """A plausible 法人番号: a Tokyo registry office (0104), a kind (01 株式会社), a serial."""
    base = f"010401{700_001 + index * 37:06d}"
    return f"{check_digit(base)}{base}"


def _sample(tenant: SampleTenantLike) -> _Sample:
    return _FIXED.get(tenant.key) or _Sample(
        "情報システム担当", f"it@{tenant.domain}", "ja", 10, 30
    )


def _block(tenant: SampleTenantLike, sample: _Sample, app: dict[str, Any]) -> CompanyConfig:
    return CompanyConfig.model_validate(
        {
            "key": tenant.key,
            "name": tenant.name,
            "contact_name": sample.contact_name,
            "contact_email": sample.contact_email,
            "language": sample.language,
            "planned_seats": sample.planned_seats,
            "auto_isolation": sample.auto_isolation,
            "trial": {
                "started_days_ago": sample.started_days_ago,
                "days": TRIAL_DAYS,
                "decision": sample.decision,
            },
            "connection": app,
        }
    )


def _application(
    company: Company, sample: _Sample, number: str, programme: ProgrammeConfig, at: datetime
) -> tuple[Application, PreDiagnosis]:
    """Its web-form application, the call that completed it, and its pre-diagnosis."""
    start = jst_date(at) - timedelta(days=sample.started_days_ago)
    received = datetime.combine(start - timedelta(days=45), time(10, 30), JST)
    called = received + timedelta(days=1, hours=4)
    attested = [a.key for a in programme.eligibility.attestations]
    raw = {
        "法人番号": number,
        "法人名": company.name,
        "代表者": sample.representative,
        "所在地": sample.address,
        "業種": sample.industry,
        "資本金": f"{sample.capital_yen:,}円",
        "従業員数": f"{sample.employees}名",
        "担当者": sample.contact_name,
        "メールアドレス": sample.contact_email,
        "電話番号": sample.phone,
        "コース": "EDR導入コース",
        "利用予定人数": str(sample.planned_seats),
        "EDR導入状況": "なし",
    }
    application = Application(
        company_id=company.id,
        received_at=received,
        source="sandbox sample programme",
        fingerprint=hashlib.sha256(f"sample:{company.key}".encode()).hexdigest(),
        raw=raw,
        course=company.course,
        planned_seats=sample.planned_seats,
        attestations=attested,
        eligibility="eligible",
        eligibility_reasons=[],
        decided_at=received,
        call_due_on=(received + timedelta(days=3)).date(),
        call_done_at=called,
        call_by=SAMPLE_ACTOR,
    )
    diagnosis = PreDiagnosis(
        company_id=company.id,
        done_at=called + timedelta(days=10),
        done_by=SAMPLE_ACTOR,
        network_notes="光回線1本、ルーター配下にスイッチ1台",
        free_hub_ports=4,
        existing_antivirus=sample.antivirus,
        edr_users=sample.planned_seats,
        security_policy="partial",
    )
    return application, diagnosis


def seed_sample_programme(
    session: Session,
    programme: ProgrammeConfig,
    tenants: Sequence[SampleTenantLike],
    *,
    at: datetime,
) -> int:
    """Seed the sample programme for these sandbox tenants into a store that holds no
    programme yet (no company, cohort or predecessors' list); returns how many companies
    were seeded (0: the store holds a programme already, or the config has no
    `[programme.app]` to reach them through)."""
    if any(
        session.scalar(select(column).limit(1)) is not None
        for column in (Company.id, Cohort.id, PredecessorRecord.id)
    ):
        return 0
    if programme.app is None:
        log.warning("no sample programme seeded: the config has no [programme.app]")
        return 0
    course = next(k for k, c in programme.courses.items() if c.connector == programme.app.connector)
    cohort = Cohort(
        key=SAMPLE_COHORT,
        name=SAMPLE_COHORT_NAME,
        course=course,
        capacity=max(SAMPLE_CAPACITY, len(tenants)),
    )
    cohort.created_at = at
    session.add(cohort)
    session.flush()
    samples = [_sample(t) for t in tenants]
    blocks = [
        _block(t, s, programme.app.connection(t.tenant_id))
        for t, s in zip(tenants, samples, strict=True)
    ]
    import_companies(
        session,
        blocks,
        programme,
        source="the sandbox's sample programme",
        actor=SAMPLE_ACTOR,
        at=at,
        cohort=SAMPLE_COHORT,
    )
    for index, (tenant, sample) in enumerate(zip(tenants, samples, strict=True)):
        company = session.scalars(select(Company).where(Company.key == tenant.key)).one()
        number = _corporate_number(index)
        company.corporate_number = number
        company.representative = sample.representative
        company.address = sample.address
        company.prefecture = programme.eligibility.prefecture
        company.industry = sample.industry
        company.capital_yen = sample.capital_yen
        company.employees = sample.employees
        company.contact_phone = sample.phone
        session.add_all(_application(company, sample, number, programme, at))
    session.flush()
    log.info("seeded the sample programme: %d companies", len(tenants))
    return len(tenants)
