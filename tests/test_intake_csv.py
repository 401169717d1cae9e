"""The web form's CSV read as people and Excel write it: encodings, values, bad rows by line."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

import pytest
from intake_rows import GOOD, HEADER, SOLE, csv_bytes, csv_text, row

from edrtrial.config import ProgrammeConfig
from edrtrial.errors import IntakeError
from edrtrial.programme.intake import read_applications
from edrtrial.programme.written import (
    CellError,
    email,
    parse_count,
    parse_received,
    parse_yen,
    parse_yes,
    prefecture_of,
)

PROGRAMME = ProgrammeConfig()


@pytest.mark.parametrize(
    ("written", "yen"),
    [
        ("3億円", 300_000_000),
        ("3,000万円", 30_000_000),
        ("300,000,000", 300_000_000),
        ("3億5000万円", 350_000_000),
        ("3億5,000万円", 350_000_000),
        ("5000万", 50_000_000),
        ("5千万円", 50_000_000),
        ("¥50,000,000", 50_000_000),
        ("￥５０，０００，０００", 50_000_000),
        ("０円", 0),
        ("1.5億円", 150_000_000),
        ("１億", 100_000_000),
        ("300百万円", 300_000_000),  # a financial statement's unit
        ("300,000千円", 300_000_000),
        ("", None),
        ("なし", None),
    ],
)
def test_capital_is_read_as_written(written: str, yen: int | None) -> None:
    assert parse_yen(written) == yen


@pytest.mark.parametrize("written", ["三億円", "3億円くらい", "1.23456円", "abc"])
def test_capital_that_is_no_amount_is_refused(written: str) -> None:
    with pytest.raises(CellError):
        parse_yen(written)


@pytest.mark.parametrize(
    ("written", "count"), [("45名", 45), ("45人", 45), ("４５", 45), ("45 名", 45), ("1,200", 1200)]
)
def test_employees_are_read_as_written(written: str, count: int) -> None:
    assert parse_count(written) == count


def test_employees_that_are_no_number_are_refused() -> None:
    with pytest.raises(CellError, match="約45名"):
        parse_count("約45名")


@pytest.mark.parametrize("yes", ["はい", "有", "あり", "○", "〇", "1", "true", "TRUE", "Yes"])
def test_yes_is_read_in_every_spelling(yes: str) -> None:
    assert parse_yes(yes) is True


@pytest.mark.parametrize("no", ["いいえ", "無", "なし", "×", "0", "false", ""])
def test_no_is_read_in_every_spelling(no: str) -> None:
    assert parse_yes(no) is False


@pytest.mark.parametrize(
    ("address", "prefecture"),
    [
        ("東京都千代田区丸の内1-1", "東京都"),
        ("〒100-0001 東京都千代田区千代田1-1", "東京都"),
        ("〒１００－０００１　東京都千代田区", "東京都"),
        ("100-0001 東京都千代田区", "東京都"),
        ("北海道札幌市中央区", "北海道"),
        ("大阪府大阪市北区", "大阪府"),
        ("京都府京都市", "京都府"),
        ("神奈川県横浜市", "神奈川県"),
        ("鹿児島県鹿児島市", "鹿児島県"),
        ("千代田区丸の内1-1", ""),
    ],
)
def test_the_prefecture_is_read_from_the_address(address: str, prefecture: str) -> None:
    assert prefecture_of(address) == prefecture


@pytest.mark.parametrize(
    "written", ["a,b@x.jp", "a@x.jp;b@y.jp", "Name <a@x.jp>", "a@x.jp\nBcc: c@y.jp", "a b@x.jp"]
)
def test_an_e_mail_cell_holds_one_bare_address(written: str) -> None:
    # A list or a display name would mail someone the applicant did not mean.
    with pytest.raises(CellError, match="is not an e-mail address"):
        email(written)
    assert email("ｉｔ＠sakura.example.jp") == "it@sakura.example.jp"


def test_a_receipt_time_without_a_zone_is_tokyos() -> None:
    assert parse_received("2026/11/20 10:00") == datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    assert parse_received("2026-11-20 10:00:00") == datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    assert parse_received("2026-11-20T10:00:00+09:00") == datetime(2026, 11, 20, 1, tzinfo=UTC)
    assert parse_received("2026/12/1 9:05") == datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
    assert parse_received("２０２６／１２／０１") == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_each_encoding_reads_the_same_rows_with_circled_digits_and_wave_dashes_intact(
    encoding: str,
) -> None:
    name = "株式会社①テック～東京"
    note = "平日9:00～17:00 ①ノートPC"
    data = csv_bytes([row(会社名=name, 備考=note), SOLE], encoding)
    read = read_applications(data, PROGRAMME, source="applications.csv")
    assert read.encoding == encoding
    assert read.bad == []
    first, second = read.rows
    assert first.name == name  # as typed, for display
    assert first.raw["会社名"] == name
    assert first.raw["備考"] == note
    assert first.capital_yen == 30_000_000
    assert first.employees == 45
    assert first.prefecture == "東京都"
    assert first.corporate_number == "5010801012345"
    assert first.attestations == tuple(a.key for a in PROGRAMME.eligibility.attestations)
    assert second.kind == "sole_proprietor"
    assert second.corporate_number is None
    assert second.capital_yen == 0


def test_the_same_application_has_one_fingerprint_in_every_encoding_and_column_order() -> None:
    reversed_header = tuple(reversed(HEADER))
    prints = {
        read_applications(data, PROGRAMME, source="x.csv").rows[0].fingerprint
        for data in (
            csv_bytes([GOOD], "cp932"),
            csv_bytes([GOOD], "utf-8-sig"),
            csv_bytes([GOOD], "utf-8", reversed_header),
            csv_bytes([row(従業員数="４５人", 資本金="30,000,000")], "utf-8"),
        )
    }
    assert len(prints) == 1
    other = read_applications(csv_bytes([row(従業員数="46")]), PROGRAMME, source="x.csv")
    assert other.rows[0].fingerprint not in prints


def test_bad_rows_are_reported_by_the_line_they_start_on_and_good_rows_are_kept() -> None:
    text = csv_text(
        [
            GOOD,  # line 2
            row(備考="二行の\r\n備考"),  # lines 3-4: a quoted cell spanning two lines
            row(資本金="たくさん", 担当者メール="nobody"),  # line 5
            row(法人番号="12345"),  # line 6
            SOLE | {"法人番号": "7000012050002"},  # line 7
            row(会社名=""),  # line 8
        ]
    )
    read = read_applications(text.encode("utf-8"), PROGRAMME, source="a.csv")
    assert [r.line for r in read.rows] == [2, 3]
    assert read.rows[1].raw["備考"] == "二行の\r\n備考"
    assert [(b.line, b.reason) for b in read.bad] == [
        (
            5,
            "資本金: 'たくさん' is not an amount of yen (write e.g. 3億円 or 50,000,000); "
            "担当者メール: 'nobody' is not an e-mail address",
        ),
        (6, "法人番号: 法人番号 has 5 digits, not 13"),
        (7, "法人番号: a 個人事業主 has none (leave it empty, or say 法人)"),
        (8, "会社名: empty"),
    ]


def test_blank_lines_are_skipped_and_lines_still_counted() -> None:
    text = csv_text([GOOD]) + "\r\n,,,,\r\n" + csv_text([row(法人番号="x")]).split("\r\n", 1)[1]
    read = read_applications(text.encode("utf-8"), PROGRAMME, source="a.csv")
    assert [r.line for r in read.rows] == [2]
    assert [b.line for b in read.bad] == [5]


def test_a_row_with_more_cells_than_the_header_is_bad() -> None:
    text = csv_text([GOOD]).rstrip("\r\n") + ",extra\r\n"
    read = read_applications(text.encode("utf-8"), PROGRAMME, source="a.csv")
    assert read.rows == []
    assert read.bad[0].line == 2
    assert "1 cell(s) more than the header" in read.bad[0].reason


def test_empty_cells_past_the_header_are_no_extra_cells() -> None:
    # Excel writes a row's trailing empty columns (",,") when another row was wider.
    text = csv_text([GOOD]).rstrip("\r\n") + ",,\r\n"
    read = read_applications(text.encode("cp932"), PROGRAMME, source="a.csv")
    assert read.bad == []
    assert [r.line for r in read.rows] == [2]


def test_a_nul_character_is_a_bad_row_naming_its_column_and_the_good_rows_stay() -> None:
    # PostgreSQL stores no NUL in text: stored, it would fail the import there.
    text = csv_text([row(会社名="さくら\x00製作所"), row(法人番号="7000012050002", 備考="a\x00")])
    read = read_applications(text.encode("utf-8"), PROGRAMME, source="a.csv")
    assert read.rows == []
    assert [(b.line, b.reason) for b in read.bad] == [
        (2, "会社名: a NUL character (the file is damaged here)"),
        (3, "備考: a NUL character (the file is damaged here)"),
    ]
    good = read_applications(csv_bytes([GOOD]), PROGRAMME, source="a.csv")
    assert len(good.rows) == 1


def test_a_column_read_twice_in_the_header_is_refused_naming_it() -> None:
    header = (*HEADER, "法人番号")
    with pytest.raises(IntakeError, match="a.csv: the header has 法人番号 twice"):
        read_applications(csv_bytes([GOOD], header=header), PROGRAMME, source="a.csv")


def test_a_column_not_read_may_come_twice() -> None:
    header = (*HEADER, "備考")
    read = read_applications(csv_bytes([GOOD], header=header), PROGRAMME, source="a.csv")
    assert read.bad == []
    assert len(read.rows) == 1


def test_a_file_without_a_required_column_is_refused_naming_it() -> None:
    header = [h for h in HEADER if h not in ("会社名", "業種")]
    with pytest.raises(IntakeError, match="a.csv: no column 会社名, 業種 in the header"):
        read_applications(csv_bytes([GOOD], header=header), PROGRAMME, source="a.csv")


def test_headers_may_use_other_spellings_and_full_width_spaces() -> None:
    renamed = {"会社名": "事業者名", "所在地": "本店所在地", "担当者メール": "メールアドレス"}
    header = [renamed.get(h, h).replace("宣誓", "宣誓　") for h in HEADER]
    cells = {renamed.get(h, h).replace("宣誓", "宣誓　"): v for h, v in GOOD.items()}
    read = read_applications(csv_bytes([cells], header=header), PROGRAMME, source="a.csv")
    assert read.bad == []
    assert read.rows[0].name == "株式会社さくら製作所"
    assert len(read.rows[0].attestations) == 7


def test_a_file_in_no_known_encoding_says_so_with_the_line() -> None:
    data = csv_bytes([GOOD], "utf-8") + b"\x81\x20broken\r\n"
    with pytest.raises(IntakeError, match=r"a.csv: line 3: the file is neither UTF-8 nor CP932"):
        read_applications(data, PROGRAMME, source="a.csv")


def test_an_unknown_course_is_a_bad_row_naming_the_courses() -> None:
    read = read_applications(csv_bytes([row(希望コース="UTM導入コース")]), PROGRAMME, source="a")
    assert (
        read.bad[0].reason
        == "希望コース: 'UTM導入コース' is no course of the programme (EDR導入コース)"
    )


def test_the_shipped_sample_is_excels_cp932_and_reads_whole() -> None:
    data = (files("edrtrial.programme") / "samples" / "applications.csv").read_bytes()
    read = read_applications(data, PROGRAMME, source="applications.csv")
    assert read.encoding == "cp932"
    assert read.bad == []
    assert len(read.rows) == 6
    assert {r.prefecture for r in read.rows} == {"東京都", "大阪府"}
    assert any(r.existing_edr for r in read.rows)
    assert any(r.kind == "sole_proprietor" for r in read.rows)


def test_a_value_longer_than_the_store_keeps_is_a_bad_row() -> None:
    read = read_applications(
        csv_bytes([row(会社名="株" * 201, 担当者電話="0" * 41)]), PROGRAMME, source="a"
    )
    assert read.rows == []
    assert read.bad[0].reason == (
        "会社名: 201 characters; at most 200; 担当者電話: 41 characters; at most 40"
    )
