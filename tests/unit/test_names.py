"""Names syncd gives the files it moves and writes fit a file name's limit (NAME_MAX bytes)."""

from __future__ import annotations

from itertools import islice

from hypothesis import given
from hypothesis import strategies as st

from syncd.reports import errors_name, report_name
from syncd.sources.base import NAME_MAX, candidate_names, fit_name, temp_name


def size(name: str) -> int:
    return len(name.encode("utf-8", "surrogateescape"))


def test_a_name_that_fits_is_kept() -> None:
    assert fit_name("students.csv") == "students.csv"
    assert report_name("students.csv") == "students.csv.report.json"
    assert list(islice(candidate_names("students.csv"), 3)) == [
        "students.csv",
        "students.1.csv",
        "students.2.csv",
    ]


def test_a_long_name_keeps_its_start_and_extension_and_names_stay_apart() -> None:
    first, second = "students_" + "x" * 250 + "_a.csv", "students_" + "x" * 250 + "_b.csv"
    assert size(fit_name(first)) <= NAME_MAX
    assert fit_name(first).startswith("students_xxx") and fit_name(first).endswith(".csv")
    assert fit_name(first) != fit_name(second)
    assert report_name(first).endswith(".csv.report.json")  # the file's name, shortened
    assert errors_name(first).endswith(".csv.errors.csv")


@given(st.text(min_size=1, max_size=300).filter(lambda name: "/" not in name and "\0" not in name))
def test_every_name_syncd_builds_fits(name: str) -> None:
    built = [
        fit_name(name),
        report_name(name),
        errors_name(name),
        temp_name(name, "12345678"),
        *islice(candidate_names(name), 3),
        next(islice(candidate_names(name), 99_998, None)),
    ]
    assert all(size(candidate) <= NAME_MAX for candidate in built)
    if size(name) <= NAME_MAX:
        assert fit_name(name) == name
