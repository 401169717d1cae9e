"""Applications CSV files for tests: the web form's header and rows built from one good row."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

HEADER = (
    "受付日時",
    "事業者区分",
    "法人番号",
    "会社名",
    "代表者名",
    "所在地",
    "業種",
    "資本金",
    "従業員数",
    "担当者名",
    "担当者メール",
    "担当者電話",
    "言語",
    "希望コース",
    "予定利用者数",
    "既存EDR",
    "既存EDR製品名",
    "過去の支援事業参加",
    "都の同等補助事業利用",
    *(f"宣誓{letter}" for letter in "アイウエオカキ"),
    "備考",
)

GOOD: dict[str, str] = {
    "受付日時": "2026/11/20 10:00",
    "事業者区分": "法人",
    "法人番号": "5010801012345",
    "会社名": "株式会社さくら製作所",
    "代表者名": "桜井 一郎",
    "所在地": "〒144-0052 東京都大田区蒲田５－１３－２６",
    "業種": "製造業",
    "資本金": "3,000万円",
    "従業員数": "45名",
    "担当者名": "山田 太郎",
    "担当者メール": "it@sakura.example.jp",
    "担当者電話": "03-1234-5678",
    "言語": "日本語",
    "希望コース": "EDR導入コース",
    "予定利用者数": "40",
    "既存EDR": "いいえ",
    "既存EDR製品名": "",
    "過去の支援事業参加": "いいえ",
    "都の同等補助事業利用": "いいえ",
    **{f"宣誓{letter}": "はい" for letter in "アイウエオカキ"},
    "備考": "",
}

SOLE: dict[str, str] = GOOD | {
    "事業者区分": "個人事業主",
    "法人番号": "",
    "会社名": "青空デザイン事務所",
    "代表者名": "Emily Clark",
    "所在地": "東京都渋谷区神宮前3-1-1",
    "業種": "サービス業",
    "資本金": "０円",
    "従業員数": "3人",
    "担当者メール": "office@aozora.example.jp",
}


def row(**changes: str) -> dict[str, str]:
    """The good row with some cells changed (keys are the headers)."""
    return GOOD | changes


def csv_text(rows: Sequence[Mapping[str, str]], header: Sequence[str] = HEADER) -> str:
    """The rows under the header, as Excel writes them (CRLF)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for cells in rows:
        writer.writerow([cells.get(name, "") for name in header])
    return out.getvalue()


def csv_bytes(
    rows: Sequence[Mapping[str, str]], encoding: str = "cp932", header: Sequence[str] = HEADER
) -> bytes:
    """The file in `encoding`: cp932 (Excel's CSV), utf-8-sig (CSV UTF-8) or utf-8."""
    return csv_text(rows, header).encode(encoding)
