"""The cohort's anonymised results, for the programme's results report to Tokyo (PDF and CSV).

The input is one `CompanyFigures` per company of the cohort (live or purged alike: the
gathering in `programme/cohort_results.py` feeds both through one path) and carries nothing
that names a company. The tables are built here, pure, and every cell is protected before it
is laid out, so the PDF and the CSV show the same numbers and hide the same cells.

**What is hidden, and why (the rule).** A cell counting or derived from fewer than
`MIN_COMPANIES` (3) companies could single one out; and a hidden cell must not be
recomputable from what is shown. The rule, in this order:

1. *Fold before building.* In a breakdown whose rows are a partition (industry rows by the
   companies in them; detection categories and severities by the companies that had one),
   a row with fewer than 3 companies is folded into "その他". If "その他" itself has 1 or 2
   companies, the smallest remaining row is folded into it too, until it has 3 or nothing is
   left to fold. So a shown row always stands for 3 or more companies.
2. *Primary suppression.* A sum (detections, incidents, devices) is hidden when 1 or 2
   companies contributed a non-zero value to it, also inside a row of 3 or more (three
   companies of which one had every detection). A count of companies is hidden when it is 1
   or 2. A median or a 90th percentile is shown only from 3 or more companies. A zero is
   shown, unless its line hides a cell (rule 3).
3. *Secondary suppression, per line.* Every additive column (cells that add up to a shown
   total) is a line. If its hidden cells are fewer than two, or together come from fewer than
   3 companies, the smallest shown non-zero cell is hidden as well; with nothing left to hide,
   the total is hidden. Then `total − shown cells` only ever gives the sum of two or more
   hidden cells drawn from 3 or more companies, never one hidden value. A line with a hidden
   cell hides its zeros as well: otherwise "—" would mean "1 or more", and three "—" under a
   shown total of 3 would each be 1.
4. *One figure, one decision.* A total shown in several tables (detections by industry, by
   category, by severity; companies; decisions) is the same number from the same companies,
   so it is hidden in all or shown in all. Tables of different breakdowns share only their
   totals: no cell of one can be subtracted from a cell of another.
5. *Implied cells count too.* The pre-diagnosis table shows, per condition (an existing
   EDR, UTM or antivirus, a written security policy), the companies that had it and how many
   of them continued. The companies without it, and those that did not continue, are not
   printed but follow from the cohort's count and the decision table's 継続; so the count is
   shown only when both sides are 0 or 3 or more, and 継続 only when all four cells of the
   2 × 2 table are and the decision table shows 継続 (else 継続 there would come back as
   this 継続 plus the other side). A 2 × 3 table with the decisions' hidden cells as its
   margins could be solved back; this one has nothing hidden to solve for.
6. With fewer than 3 companies in the cohort (or the month asked), nothing but that fact.

Hidden cells show "—" (never "＜3", which would give away a range from the total), with a
footnote. Categories are shown in the programme's own words only; a category the vocabulary
does not know is counted as "その他の検知", so no text from an EDR reaches the report.

**Time figures.** Minutes from a ticket's creation to its acknowledgement (初動) and to its
resolution (解決) are summed up per company first (its median), then the report gives the
median and the 90th percentile of those company medians: each company counts once, so one
company with many tickets cannot set the figure. "90th percentile" here means 9 companies in
10 had a median at or below it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from edrtrial.reports.csvout import excel_csv
from edrtrial.reports.letterhead import Letterhead
from edrtrial.reports.pdf import html_to_pdf
from edrtrial.reports.render import render
from edrtrial.reports.vocabulary import CATEGORY_JA, SEVERITY_JA, SEVERITY_ORDER, category_key

MIN_COMPANIES = 3
HIDDEN = "—"
OTHER = "other"

WORDS: dict[str, str] = {
    "title": "EDR体験 実施結果（匿名集計）",
    "cohort": "対象の期",
    "period": "対象期間",
    "whole_trial": "体験期間の全体",
    "companies": "対象企業数",
    "too_few": "対象企業が3社未満のため、集計値は表示しません。",
    "t_overview": "全体の概要",
    "t_industry": "業種別",
    "t_category": "検知の種類別",
    "t_severity": "検知の重要度別",
    "t_decision": "体験終了時の判断",
    "t_prediag": "事前診断の状況と体験終了時の判断",
    "c_companies": "社数",
    "c_detections": "検知件数",
    "c_incidents": "インシデント件数",
    "c_onboarded": "導入端末数",
    "c_active": "稼働端末数",
    "c_ack_median": "初動対応時間 中央値（分）",
    "c_ack_p90": "初動対応時間 90%値（分）",
    "c_resolve_median": "解決までの時間 中央値（分）",
    "c_resolve_p90": "解決までの時間 90%値（分）",
    "c_continue": "継続",
    "c_offboard": "継続しない（アンインストール）",
    "c_undecided": "未定・その他",
    "r_total": "合計",
    "r_other": "その他（3社未満の区分をまとめたもの）",
    "r_other_category": "その他の検知",
    "r_unknown_industry": "業種不明",
    "r_edr": "既存のEDRあり",
    "r_utm": "既存のUTMあり",
    "r_av": "既存のウイルス対策ソフトあり",
    "r_policy": "セキュリティポリシーを文書化・公開済み",
    "c_had": "事前診断で該当した社数",
    "c_had_continue": "うち体験後に継続",
    "r_total_companies": "全体",
    "n_hidden": "「—」：3社未満の企業に由来する値、または表の合計から3社未満の値を逆算できる値で、"
    "企業が特定されないよう表示していません。",
    "n_other": "3社未満の区分は「その他」にまとめています。",
    "n_times": "対応時間は、企業ごとの中央値をまず求め、その中央値・90%値を示しています"
    "（1社のチケット数に左右されないため）。3社以上に該当するときだけ表示します。",
    "n_devices": "導入端末数・稼働端末数は、対象期間の最後の月の値です。",
    "n_prediag": "事前診断の状況は事前診断時点、判断は体験終了時点のものです。"
    "該当しない側（全体からの差）が3社未満になる値も表示しません。"
    "この表は対応関係を示すもので、EDR体験が判断の理由であることを示すものではありません。",
    "n_names": "企業名・テナントID・端末名など、企業を特定できる情報は含みません。",
    "csv_table": "表",
    "csv_row": "区分",
    "csv_column": "項目",
    "csv_value": "値",
    "csv_notes": "注記",
}

_INDUSTRY_JA = {
    "manufacturing": "製造業・建設業・運輸業・その他の業種",
    "wholesale": "卸売業",
    "services": "サービス業",
    "retail": "小売業",
}


@dataclass(frozen=True, slots=True)
class CompanyFigures:
    """One company's figures for the period: nothing in it names the company."""

    industry: str
    detections: Mapping[str, Mapping[str, int]]  # category -> severity -> count
    incidents: int
    ack_minutes: Sequence[float]
    resolve_minutes: Sequence[float]
    devices_onboarded: int
    devices_active: int
    decision: str  # "continue" | "offboard" | anything else (undecided, extend)
    pre_diagnosis: Mapping[str, Any]


@dataclass(slots=True)
class Cell:
    """A figure and the companies it comes from (their positions in the input, never ids)."""

    value: float
    who: frozenset[int]
    shown: bool = True

    @property
    def text(self) -> str:
        """The cell as printed: "—" when hidden, an integer with commas, or one decimal."""
        if not self.shown:
            return HIDDEN
        if float(self.value).is_integer():
            return f"{int(self.value):,}"
        return f"{self.value:,.1f}"


@dataclass(slots=True)
class Table:
    """One table of the report: row labels, column labels, cells; `total` is the last row
    when the table has one (additive columns sum to it)."""

    key: str
    title: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]
    additive: list[bool] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CohortResults:
    """The whole report: what the PDF and the CSV lay out."""

    programme: str
    secretariat: str
    secretariat_contact: str
    cohort_name: str
    period: str
    companies: int
    enough: bool
    tables: list[Table]
    notes: list[str]
    words: Mapping[str, str] = field(default_factory=lambda: WORDS)


def _median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def _p90(values: Sequence[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _sum(companies: Sequence[CompanyFigures], ids: Iterable[int], of: Any) -> Cell:
    """The sum of `of(company)` over `ids`, from the companies with a non-zero value."""
    values = {i: of(companies[i]) for i in ids}
    return Cell(sum(values.values()), frozenset(i for i, v in values.items() if v))


def _count(ids: Iterable[int]) -> Cell:
    who = frozenset(ids)
    return Cell(len(who), who)


def _primary(cell: Cell) -> None:
    if 0 < len(cell.who) < MIN_COMPANIES:
        cell.shown = False


def protect_line(cells: Sequence[Cell], total: Cell) -> None:
    """Primary and secondary suppression of one additive line (rules 2 and 3); a line with a
    hidden cell hides its zeros too, so "—" never tells a reader the value is 1 or more
    (three "—" summing to a shown 3 would otherwise be 1, 1 and 1)."""
    for cell in (*cells, total):
        _primary(cell)
    while total.shown:
        hidden = [c for c in cells if not c.shown and c.value]
        who = frozenset().union(*(c.who for c in hidden))
        if not hidden or (len(hidden) >= 2 and len(who) >= MIN_COMPANIES):
            break
        more = sorted((c for c in cells if c.shown and c.value), key=lambda c: c.value)
        if more:
            more[0].shown = False
        else:
            total.shown = False
    if any(not c.shown for c in cells):
        for cell in cells:
            if not cell.value:
                cell.shown = False


def fold(groups: Mapping[str, frozenset[int]]) -> dict[str, frozenset[int]]:
    """Rule 1: rows of fewer than 3 companies folded into OTHER, and OTHER made 3 or more."""
    kept = {k: v for k, v in groups.items() if len(v) >= MIN_COMPANIES and k != OTHER}
    other = frozenset().union(*(v for k, v in groups.items() if k not in kept))
    while 0 < len(other) < MIN_COMPANIES and kept:
        smallest = min(kept, key=lambda k: (len(kept[k]), k))
        other |= kept.pop(smallest)
    return kept | ({OTHER: other} if other else {})


def _time_cells(companies: Sequence[CompanyFigures], ids: Iterable[int], of: Any) -> list[Cell]:
    medians = {i: m for i in ids if (m := _median(of(companies[i]))) is not None}
    who = frozenset(medians)
    values = sorted(medians.values())
    if len(who) < MIN_COMPANIES:
        return [Cell(0, who, shown=False), Cell(0, who, shown=False)]
    return [Cell(round(statistics.median(values), 1), who), Cell(round(_p90(values), 1), who)]


def _decision(value: str) -> str:
    return value if value in ("continue", "offboard") else "undecided"


def _category(raw: str) -> str:
    key = category_key(raw)
    return key if key in CATEGORY_JA else "unknown"


def _industry_table(companies: Sequence[CompanyFigures], everyone: frozenset[int]) -> Table:
    groups: dict[str, set[int]] = {}
    for i, c in enumerate(companies):
        groups.setdefault(c.industry if c.industry in _INDUSTRY_JA else "", set()).add(i)
    folded = fold({k: frozenset(v) for k, v in groups.items()})
    order = [k for k in (*_INDUSTRY_JA, "") if k in folded] + ([OTHER] if OTHER in folded else [])
    labels = {**_INDUSTRY_JA, "": WORDS["r_unknown_industry"], OTHER: WORDS["r_other"]}
    sums = (
        lambda c: sum(sum(s.values()) for s in c.detections.values()),
        lambda c: c.incidents,
        lambda c: c.devices_onboarded,
        lambda c: c.devices_active,
    )
    rows: list[tuple[str, list[Cell]]] = []
    for key in (*order, "total"):
        ids = everyone if key == "total" else folded[key]
        cells = [_count(ids)] + [_sum(companies, ids, of) for of in sums]
        cells += _time_cells(companies, ids, lambda c: c.ack_minutes)
        cells += _time_cells(companies, ids, lambda c: c.resolve_minutes)
        rows.append((WORDS["r_total"] if key == "total" else labels[key], cells))
    for column in range(1 + len(sums)):
        protect_line([r[1][column] for r in rows[:-1]], rows[-1][1][column])
    columns = [
        WORDS[k]
        for k in (
            "c_companies",
            "c_detections",
            "c_incidents",
            "c_onboarded",
            "c_active",
            "c_ack_median",
            "c_ack_p90",
            "c_resolve_median",
            "c_resolve_p90",
        )
    ]
    return Table("industry", WORDS["t_industry"], columns, rows, [True] * 5 + [False] * 4)


def _breakdown_table(
    key: str,
    title: str,
    everyone: frozenset[int],
    counts: Sequence[Mapping[str, int]],
    order: Sequence[str],
    labels: Mapping[str, str],
) -> Table:
    """Detections broken down one way (category or severity): `counts[i]` is company i's
    detections per group."""
    groups: dict[str, set[int]] = {}
    for i, mine in enumerate(counts):
        for group, n in mine.items():
            if n:
                groups.setdefault(group, set()).add(i)
    folded = fold({k: frozenset(v) for k, v in groups.items()})
    rows: list[tuple[str, list[Cell]]] = []
    for row in (*[g for g in order if g in folded and g != OTHER], OTHER):
        if row not in folded:
            continue
        members = [row] if row != OTHER else [g for g in groups if g not in folded]
        values = {i: sum(counts[i].get(g, 0) for g in members) for i in everyone}
        rows.append((labels[row], [Cell(sum(values.values()), _who(values))]))
    total = {i: sum(counts[i].values()) for i in everyone}
    rows.append((WORDS["r_total"], [Cell(sum(total.values()), _who(total))]))
    protect_line([r[1][0] for r in rows[:-1]], rows[-1][1][0])
    return Table(key, title, [WORDS["c_detections"]], rows, [True])


def _who(values: Mapping[int, float]) -> frozenset[int]:
    return frozenset(i for i, v in values.items() if v)


def _decision_table(companies: Sequence[CompanyFigures], everyone: frozenset[int]) -> Table:
    cells = [
        _count(i for i in everyone if _decision(companies[i].decision) == d)
        for d in ("continue", "offboard", "undecided")
    ]
    total = _count(everyone)
    protect_line(cells, total)
    labels = [WORDS["c_continue"], WORDS["c_offboard"], WORDS["c_undecided"]]
    rows = [(label, [cell]) for label, cell in zip(labels, cells, strict=True)]
    rows.append((WORDS["r_total"], [total]))
    return Table("decision", WORDS["t_decision"], [WORDS["c_companies"]], rows, [True])


_CONDITIONS: tuple[tuple[str, Any], ...] = (
    ("r_edr", lambda p: bool(p.get("existing_edr"))),
    ("r_utm", lambda p: bool(p.get("existing_utm"))),
    ("r_av", lambda p: bool(p.get("existing_antivirus"))),
    ("r_policy", lambda p: p.get("security_policy") in ("documented", "published")),
)


def _prediagnosis_table(
    companies: Sequence[CompanyFigures], everyone: frozenset[int], decided: Table
) -> Table:
    """Rule 5: per condition at pre-diagnosis, the companies that had it and how many of them
    continued. The rows without the condition are not shown, but a reader can work them out
    (the cohort's count and the decision table's 継続 are shown), so both sides are checked:
    the count is shown when neither side has 1 or 2 companies, and 継続 when none of the four
    cells of the 2 × 2 table (had it or not × continued or not) has 1 or 2, and the decision
    table shows 継続 (hidden there, it would come back as this 継続 plus the other side)."""
    continue_shown = decided.rows[0][1][0].shown
    continued = frozenset(i for i in everyone if _decision(companies[i].decision) == "continue")
    rows: list[tuple[str, list[Cell]]] = []
    for label, holds in _CONDITIONS:
        yes = frozenset(i for i in everyone if holds(companies[i].pre_diagnosis))
        count, among = _count(yes), _count(yes & continued)
        quadrants = (yes & continued, yes - continued, continued - yes, everyone - yes - continued)
        count.shown = _safe(yes) and _safe(everyone - yes)
        among.shown = continue_shown and count.shown and all(_safe(q) for q in quadrants)
        rows.append((WORDS[label], [count, among]))
    columns = [WORDS["c_had"], WORDS["c_had_continue"]]
    return Table("prediagnosis", WORDS["t_prediag"], columns, rows, [False, False])


def _safe(who: frozenset[int]) -> bool:
    return len(who) == 0 or len(who) >= MIN_COMPANIES


def cohort_results(
    companies: Sequence[CompanyFigures],
    *,
    programme: str,
    secretariat: str,
    secretariat_contact: str = "",
    cohort_name: str,
    month: date | None = None,
) -> CohortResults:
    """The protected tables of the cohort's results (the rule is the module's docstring)."""
    everyone = frozenset(range(len(companies)))
    period = f"{month.year}年{month.month}月" if month else WORDS["whole_trial"]
    enough = len(companies) >= MIN_COMPANIES
    tables: list[Table] = []
    if enough:
        industry = _industry_table(companies, everyone)
        # The industry table's total row, one figure a line (the same cells: one decision).
        overview = Table(
            "overview",
            WORDS["t_overview"],
            [WORDS["r_total_companies"]],
            [(c, [cell]) for c, cell in zip(industry.columns, industry.rows[-1][1], strict=True)],
            [False],
        )
        categories: list[dict[str, int]] = []
        for c in companies:
            mine: dict[str, int] = {}
            for cat, sev in c.detections.items():
                mine[_category(cat)] = mine.get(_category(cat), 0) + sum(sev.values())
            categories.append(mine)
        by_severity: list[dict[str, int]] = []
        for c in companies:
            mine = {}
            for sev in c.detections.values():
                for level, n in sev.items():
                    key = level.casefold() if level.casefold() in SEVERITY_JA else "informational"
                    mine[key] = mine.get(key, 0) + n
            by_severity.append(mine)
        category_labels = {**CATEGORY_JA, "unknown": WORDS["r_other_category"]}
        category_labels[OTHER] = WORDS["r_other"]
        severity_labels = {**SEVERITY_JA, OTHER: WORDS["r_other"]}
        decided = _decision_table(companies, everyone)
        tables = [
            overview,
            industry,
            _breakdown_table(
                "category",
                WORDS["t_category"],
                everyone,
                categories,
                [*CATEGORY_JA, "unknown"],
                category_labels,
            ),
            _breakdown_table(
                "severity",
                WORDS["t_severity"],
                everyone,
                by_severity,
                SEVERITY_ORDER,
                severity_labels,
            ),
            decided,
            _prediagnosis_table(companies, everyone, decided),
        ]
    notes = [WORDS[k] for k in ("n_hidden", "n_other", "n_times", "n_devices", "n_prediag")]
    notes.append(WORDS["n_names"])
    return CohortResults(
        programme=programme,
        secretariat=secretariat,
        secretariat_contact=secretariat_contact,
        cohort_name=cohort_name,
        period=period,
        companies=len(companies),
        enough=enough,
        tables=tables,
        notes=notes if enough else [WORDS["too_few"], WORDS["n_names"]],
    )


def results_csv(results: CohortResults) -> bytes:
    """The report as one long table (表, 区分, 項目, 値), UTF-8 with BOM, so Excel opens it
    with its Japanese headings and each row filters cleanly; the notes close it."""
    header = [WORDS[k] for k in ("csv_table", "csv_row", "csv_column", "csv_value")]
    rows = [[WORDS["title"], WORDS["cohort"], "", results.cohort_name]]
    rows.append([WORDS["title"], WORDS["period"], "", results.period])
    for table in results.tables:
        for label, cells in table.rows:
            for column, cell in zip(table.columns, cells, strict=True):
                rows.append([table.title, label, column, cell.text.replace(",", "")])
    rows += [[WORDS["csv_notes"], "", "", note] for note in results.notes]
    return excel_csv(header, rows)


def results_html(results: CohortResults) -> str:
    """The report as the HTML page its PDF is printed from: the shared print layout
    (`report_layout.html.j2`: letterhead, page numbers, the report font) around the tables.
    It carries no time it was made: the figures are the cohort's, whenever printed."""
    contact = tuple(line.strip() for line in results.secretariat_contact.splitlines())
    return render(
        "cohort_results.html.j2",
        r=results,
        letterhead=Letterhead(
            results.programme, results.secretariat, tuple(line for line in contact if line)
        ),
        title=results.words["title"],
        generated_at="",
        language="ja",
    )


def results_pdf(results: CohortResults) -> bytes:
    """The report as PDF (WeasyPrint, IPAex Gothic: its text stays extractable)."""
    return html_to_pdf(results_html(results))
