"""A company's identity: the 法人番号's check digit on real published numbers, and names and
addresses compared however an applicant typed them."""

from __future__ import annotations

import pytest

from edrtrial.programme.identity import (
    check_digit,
    corporate_number,
    identity_key,
    is_valid_corporate_number,
    normalised_address,
    normalised_name,
)

# Published 法人番号 (国税庁法人番号公表サイト): the National Tax Agency, the National Diet
# Library, Toyota Motor Corporation, and two more quoted with their registry numbers.
REAL = [
    "7000012050002",  # 国税庁
    "1000011000005",  # 国立国会図書館
    "1180301018771",  # トヨタ自動車株式会社
    "4011001098993",
    "2120901007402",
]


@pytest.mark.parametrize("number", REAL)
def test_real_corporate_numbers_check(number: str) -> None:
    assert is_valid_corporate_number(number)
    assert check_digit(number[1:]) == int(number[0])


@pytest.mark.parametrize("number", REAL)
def test_every_other_first_digit_fails_the_check(number: str) -> None:
    for first in "123456789":
        if first != number[0]:
            assert not is_valid_corporate_number(first + number[1:])


def test_the_weights_are_one_for_the_last_digit_and_two_for_the_one_before() -> None:
    # The NTA's number: 2·1 + 5·1 + 2·1 + 1·2 = 11; 9 − 11 mod 9 = 7. The reverse weighting
    # (2 for the last digit) would give 8, and refuse the agency's own number.
    assert check_digit("000012050002") == 7
    # Swapping two neighbouring digits is caught (their weights differ).
    assert not is_valid_corporate_number("7000012050020")


def test_the_worked_example_of_the_rule() -> None:
    # 7123456789012 from the rule's explanation: the sum is 74, 74 mod 9 = 2, 9 − 2 = 7.
    assert check_digit("123456789012") == 7


@pytest.mark.parametrize(
    "typed", ["７００００１２０５０００２", "7000-0120-50002", " 7000012050002 ", "7 000012 050002"]
)
def test_a_number_is_read_full_width_spaced_or_hyphenated(typed: str) -> None:
    assert corporate_number(typed) == "7000012050002"


@pytest.mark.parametrize(
    ("typed", "says"),
    [("700001205000", "12 digits"), ("70000120500021", "14 digits"), ("70000I2050002", "digits")],
)
def test_a_number_of_the_wrong_shape_says_what_is_wrong(typed: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        corporate_number(typed)


@pytest.mark.parametrize(
    "typed",
    [
        "株式会社さくら製作所",
        "(株)さくら製作所",
        "（株）さくら製作所",
        "㈱さくら製作所",
        "株式会社 さくら製作所",
        "株式会社\u3000さくら 製作所",
    ],
)
def test_a_name_is_one_however_its_legal_form_and_spaces_are_written(typed: str) -> None:
    assert normalised_name(typed) == "株式会社さくら製作所"


def test_legal_forms_collapse_each_to_its_own_and_keep_their_position() -> None:
    assert normalised_name("(有)たちばな") == normalised_name("有限会社たちばな")
    assert normalised_name("かえで(同)") == normalised_name("かえで合同会社")
    assert normalised_name("ＡＢＣ株式会社") == normalised_name("abc(株)")
    # 前株 and 後株 are two names.
    assert normalised_name("株式会社さくら") != normalised_name("さくら株式会社")
    assert normalised_name("有限会社さくら") != normalised_name("株式会社さくら")


def test_an_address_is_one_with_or_without_postal_code_full_width_or_dashes() -> None:
    one = normalised_address("〒150-0001 東京都渋谷区神宮前３－１－１")
    assert one == normalised_address("東京都渋谷区神宮前3-1-1")
    assert one == normalised_address("150-0001　東京都 渋谷区 神宮前3ー1ー1")


def test_an_address_is_one_with_its_block_numbers_in_words_or_dashes() -> None:
    one = normalised_address("東京都渋谷区神宮前3-1-1")
    assert one == normalised_address("東京都渋谷区神宮前3丁目1番1号")
    assert one == normalised_address("東京都渋谷区神宮前３丁目１番地１")
    assert one == normalised_address("東京都渋谷区神宮前3丁目1-1")
    assert one != normalised_address("東京都渋谷区神宮前3丁目1番2号")
    # A number in a building's name is not a block number.
    assert normalised_address("東京都港区1-1 第2ビル3号館") == normalised_address(
        "東京都港区1-1 第2ビル3号館"
    )


def test_a_sole_proprietor_is_known_by_name_address_and_representative() -> None:
    key = identity_key("青空デザイン事務所", "東京都渋谷区神宮前3-1-1", "Emily Clark")
    assert key == identity_key(
        "青空デザイン事務所", "〒150-0001 東京都渋谷区神宮前３－１－１", "EMILY  CLARK"
    )
    assert key != identity_key("青空デザイン事務所", "東京都渋谷区神宮前3-1-2", "Emily Clark")
    assert key != identity_key("青空デザイン事務所", "東京都渋谷区神宮前3-1-1", "Emily Clarke")


def test_a_number_excel_turned_into_an_exponent_says_how_to_fix_it() -> None:
    with pytest.raises(ValueError, match="Excel's exponent notation: format the column as text"):
        corporate_number("5.01080E+12")
