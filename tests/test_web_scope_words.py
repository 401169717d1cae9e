"""A person limited to some cohorts is never told, even in a refusal or a status line, the
name of a company in another cohort."""

from __future__ import annotations

from datetime import timedelta

from edrtrial.access.scope import Scope
from edrtrial.db import transaction
from edrtrial.models import Cohort, Company, JobRun
from edrtrial.service import status

from sandbox_config import settings as config_settings


def test_a_refusal_names_another_cohort_s_company_only_as_another_company(sessions, now):
    with transaction(sessions) as session:
        mine = Cohort(key="c1", name="c1", course="edr", capacity=5)
        theirs = Cohort(key="c2", name="c2", course="edr", capacity=5)
        session.add_all([mine, theirs])
        session.flush()
        session.add_all(
            [
                Company(key="alpha", name="アルファ株式会社", contact_email="a@x.jp", cohort=mine),
                Company(
                    key="kirishima", name="霧島工業株式会社", contact_email="k@x.jp", cohort=theirs
                ),
                Company(key="applicant", name="応募者株式会社", contact_email="p@x.jp"),
            ]
        )
        ids = (mine.id,)
    said = "tenant 1111 is held by company 'kirishima' (霧島工業株式会社); alpha keeps its own"
    with sessions() as session:
        shown = Scope.limited_to(ids).hide_others(session, said)
        assert "kirishima" not in shown and "霧島" not in shown
        assert "another company" in shown and "alpha keeps its own" in shown
        assert Scope().hide_others(session, said) == said
        japanese = Scope.limited_to(ids).hide_others(session, said, "別の企業")
        assert "霧島" not in japanese and "別の企業" in japanese


def test_the_status_a_limited_person_reads_carries_no_service_wide_error_text(sessions, now):
    from edrtrial.config import Settings

    with transaction(sessions) as session:
        session.add(Cohort(key="c1", name="c1", course="edr", capacity=5))
        session.add(
            JobRun(
                job="monthly-reports",
                company_key="",
                last_failure_at=now,
                last_failure_error="report of kirishima cannot be written",
                failures=3,
                failing_since=now - timedelta(hours=2),
            )
        )
    settings = Settings.model_validate(config_settings("sqlite://"))
    with sessions() as session:
        whole = status.read_status(session, settings, now)
        limited = status.as_seen_by(session, whole, Scope.limited_to([1]), settings)
    [job] = [j for j in limited.jobs if j.job == "monthly-reports"]
    assert job.failures == 3 and job.last_failure_error == ""
    assert not any("kirishima" in p for p in limited.problems)
    assert any("kirishima" in j.last_failure_error for j in whole.jobs)
