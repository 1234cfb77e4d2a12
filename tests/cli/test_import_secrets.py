"""SPEC §2.2 and §6: passwords never appear anywhere; hashed with argon2id when kept."""

from __future__ import annotations

import json
from pathlib import Path

import argon2
import pytest
import sqlalchemy as sa

from tests.cli.conftest import Outcome, Syncd
from tests.cli.rosters import imported, students_csv

PASSWORDS = ("Winter-2026-kc", "Fjord!88", "=Sol_4421", "Clover77 Zoë")
HEADER = ("SyncID", "First name", "Last name", "User name", "Password", "Pupil sync key")
ROWS = [
    ("P1", "Katrin", "Müller", "katrin.mueller", PASSWORDS[0], "S1"),
    ("P2", "Peter", "Sørensen", "peter.sorensen", PASSWORDS[1], "S2"),
    ("P3", "Ana", "Nuñez", "ana.nunez", PASSWORDS[2], "S3"),
    ("P4", "Sean", "O'Brien", "sean.obrien", PASSWORDS[3], "S4"),
]


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with the smallest cost: the tests check where hashes go, not strength."""

    class CheapHasher(argon2.PasswordHasher):
        def __init__(self) -> None:
            super().__init__(time_cost=1, memory_cost=8, parallelism=1)

    monkeypatch.setattr(argon2, "PasswordHasher", CheapHasher)


def _parents() -> str:
    rows = [*ROWS, ("P5", "Zoë", "", "zoe", "Tr0ub4dor&3", "S5")]  # P5 rejected: no last name
    lines = [";".join(HEADER), *(";".join(row) for row in rows)]
    return "\r\n".join(lines) + "\r\n"


def _database_dump(syncd: Syncd) -> str:
    engine = sa.create_engine(syncd.database_url)
    dump = []
    with engine.connect() as connection:
        for name in sa.inspect(connection).get_table_names():
            for row in connection.execute(sa.text(f'SELECT * FROM "{name}"')):
                dump.append(repr(tuple(row)))
    engine.dispose()
    return "\n".join(dump)


def _everything_printed(syncd: Syncd, outcomes: list[Outcome]) -> str:
    texts = [o.stdout + o.stderr for o in outcomes]
    file_ids = [str(entry["id"]) for entry in syncd("files", "--json").json()]
    for args in (
        *(("history", "--file", file_id, "--json") for file_id in file_ids),
        ("export", "persons", "--json"),
        ("export", "persons", "--format", "csv"),
        ("export", "relationships", "--format", "csv"),
        ("history", "--person", "P1", "--json"),
        ("history", "--person", "P1"),
        ("files", "--json"),
        ("status", "--json"),
    ):
        outcome = syncd(*args)
        assert outcome.exit_code == 0, (args, outcome.stderr)
        texts.append(outcome.stdout + outcome.stderr)
    texts.append(syncd.audit_path.read_text(encoding="utf-8"))
    for path in Path(syncd.root).rglob("*"):
        if path.is_file() and path.name.endswith((".report.json", ".errors.csv")):
            texts.append(path.read_text(encoding="utf-8"))
    texts.append(_database_dump(syncd))
    return "\n".join(texts)


def _assert_no_password(text: str) -> None:
    for password in (*PASSWORDS, "Tr0ub4dor&3"):
        assert password not in text
        assert json.dumps(password)[1:-1] not in text  # as escaped in JSON


def test_passwords_dropped_by_default_appear_nowhere(syncd: Syncd) -> None:
    outcomes = [imported(syncd, "students.csv", students_csv())]
    outcomes.append(syncd("import", str(syncd.write("parents.csv", _parents()))))
    outcomes.append(
        syncd("--debug", "import", "--dry-run", "--json", str(syncd.root / "parents.csv"))
    )
    assert outcomes[1].exit_code == 0, outcomes[1].stderr
    assert (syncd.root / "parents.csv.errors.csv").is_file()  # P5 was rejected
    report = json.loads((syncd.root / "parents.csv.report.json").read_text("utf-8"))
    assert report["ignored_columns"] == ["Password"]
    _assert_no_password(_everything_printed(syncd, outcomes))
    assert "$argon2" not in _database_dump(syncd)


def test_password_of_a_rejected_row_is_not_in_the_errors_file(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = "SyncID;First name;Last name;Password;Pupil sync key\r\n"
    rows = "P1;Ana;Nuñez;ok-one;S1\r\nP2;Bo;Ek;ok-two;S2\r\nP3;;;Hunter2!;S3\r\n"
    imported(syncd, "parents.csv", header + rows)
    errors = (syncd.root / "parents.csv.errors.csv").read_text("utf-8")
    assert "Hunter2!" not in errors
    assert errors.splitlines()[1].startswith("4,")


def test_a_row_with_an_unquoted_delimiter_is_rejected_without_its_values(syncd: Syncd) -> None:
    # "Smith, Jr." unquoted moves the password under E-mail: the row's cells cannot be
    # trusted, so it is rejected whole and none of them is shown (nor the password stored
    # as an e-mail or a name).
    header = "SyncID,First name,Last name,Password,E-mail\n"
    rows = (
        "S1,Anna,Smith,Pw-1,anna@example.org\n"
        "S2,John,Smith, Jr.,Pw-Two-SECRET,john@example.org\n"
        "S3,Bob,Jones,Pw-3,bob@example.org\n"
    )
    path = syncd.write("students.csv", header + rows)
    plan = syncd("import", "--dry-run", "--json", str(path))
    applied = syncd("import", "--json", str(path))
    assert (plan.exit_code, applied.exit_code) == (0, 0)
    assert applied.json()["counts"]["rejected"] == 1
    errors = (syncd.root / "students.csv.errors.csv").read_text("utf-8").splitlines()
    assert errors[1:] == [
        '3,,,"6 cells where the header has 5: quote a value that holds the delimiter, or give '
        'every column a header"'
    ]
    assert [p["sync_key"] for p in syncd.export()] == ["S1", "S3"]
    for text in (plan.stdout, applied.stdout, "\n".join(errors), _database_dump(syncd)):
        assert "Pw-Two-SECRET" not in text


def test_a_longer_row_in_a_relationships_file_is_rejected(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name")
    imported(syncd, "parents.csv", "\n".join([",".join(header), "P1,Ana,Ruiz", "P2,Bo,Ek"]) + "\n")
    rows = "Parent ID,Student ID\nP1,S1\nP2,S2,S3\n"
    outcome = imported(syncd, "relationships.csv", rows, "--json")
    assert outcome.json()["counts"]["rejected"] == 1
    assert {(link["parent"], link["child"]) for link in syncd.export("relationships")} == {
        ("P1", "S1")
    }


def test_other_password_columns_are_dropped_never_kept_as_attributes(syncd: Syncd) -> None:
    # Vendor and hand-made files name their secrets in many ways (OneRoster extensions:
    # ext_imagineLearning_studentPassword); none of them may become a clear-text attribute.
    header = "SyncID,First name,Last name,Initial password,ext_vendor_studentPassword,Passwd,Grade"
    rows = [f"P{n + 1},Ann,Berg,{PASSWORDS[n]},{PASSWORDS[n]}x,{PASSWORDS[n]}y,5" for n in range(3)]
    outcomes = [imported(syncd, "students.csv", "\n".join([header, *rows]) + "\n")]
    report = json.loads((syncd.root / "students.csv.report.json").read_text("utf-8"))
    secrets = ["Initial password", "ext_vendor_studentPassword", "Passwd"]
    assert report["ignored_columns"] == [*secrets, "Grade"]
    assert report["attribute_columns"] == ["Grade"]
    assert [p["attributes"] for p in syncd.export()] == [{"grade": "5"}] * 3
    _assert_no_password(_everything_printed(syncd, outcomes))


def test_passwords_hash_stores_argon2id_never_the_clear_text(syncd: Syncd) -> None:
    syncd.configure(passwords="hash")
    outcomes = [imported(syncd, "students.csv", students_csv())]
    outcomes.append(syncd("import", str(syncd.write("parents.csv", _parents()))))
    assert outcomes[1].exit_code == 0, outcomes[1].stderr
    dump = _database_dump(syncd)
    assert dump.count("$argon2id$") == 4
    _assert_no_password(_everything_printed(syncd, outcomes))
    report = json.loads((syncd.root / "parents.csv.report.json").read_text("utf-8"))
    assert "Password" not in report["ignored_columns"]
    for person in syncd.export():
        assert not [key for key in person if "password" in key.casefold()]
        assert not [key for key in person["attributes"] if "password" in key.casefold()]


def test_a_dry_run_hashes_no_password(syncd: Syncd, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its transaction rolls back: argon2 there would make the preview of a district's
    # parents file take hours for nothing.
    hashed: list[str] = []
    cheap = argon2.PasswordHasher

    class CountingHasher(cheap):  # type: ignore[misc,valid-type]
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            hashed.append(str(password))
            return super().hash(password, salt=salt)

    monkeypatch.setattr(argon2, "PasswordHasher", CountingHasher)
    syncd.configure(passwords="hash", update_passwords=True, max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    parents = syncd.write("parents.csv", _parents())
    preview = syncd("import", "--dry-run", "--json", str(parents))
    assert (preview.exit_code, preview.json()["counts"]["created"]) == (0, 4)
    assert hashed == []
    assert syncd("import", str(parents)).exit_code == 0
    assert len(hashed) == 4
    changed = syncd.write("parents-2.csv", _parents().replace(PASSWORDS[0], "Spring-2027-kc"))
    preview = syncd("import", "--dry-run", "--json", str(changed))
    assert preview.json()["counts"]["updated"] == 1  # a changed password is still seen
    assert len(hashed) == 4


def test_hashed_password_verifies_against_the_file_value(syncd: Syncd) -> None:
    syncd.configure(passwords="hash")
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents())
    engine = sa.create_engine(syncd.database_url)
    with engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT password_hash FROM persons WHERE sync_key = 'P2'")
        ).scalar_one()
    engine.dispose()
    assert argon2.PasswordHasher().verify(stored, PASSWORDS[1])


def test_every_parent_gets_the_hash_of_its_own_password(syncd: Syncd) -> None:
    # Hashed on every core, each hash must come back to its own row, whichever finishes first.
    syncd.configure(passwords="hash")
    imported(syncd, "students.csv", students_csv())
    passwords = {f"P{n}": f"Pass-{n}-{'x' * (n % 7)}" for n in range(1, 61)}
    rows = [";".join(HEADER)] + [
        f"{key};Ann;Lee;;{password};S1" for key, password in passwords.items()
    ]
    imported(syncd, "parents.csv", "\r\n".join(rows) + "\r\n")
    engine = sa.create_engine(syncd.database_url)
    with engine.connect() as connection:
        stored = dict(
            connection.execute(
                sa.text("SELECT sync_key, password_hash FROM persons WHERE kind = 'parent'")
            ).all()
        )
    engine.dispose()
    hasher = argon2.PasswordHasher()
    assert stored.keys() == passwords.keys()
    assert all(hasher.verify(stored[key], password) for key, password in passwords.items())


def test_existing_persons_password_is_not_overwritten_unless_update_passwords(
    syncd: Syncd,
) -> None:
    syncd.configure(passwords="hash", max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents())
    before = _database_dump(syncd)
    changed = _parents().replace(PASSWORDS[0], "Spring-2027-kc")
    imported(syncd, "parents-2.csv", changed)
    assert syncd.events("person.updated") == []
    hashes = {line for line in before.splitlines() if "$argon2id$" in line}
    after = _database_dump(syncd)
    assert all(any(h.split("$argon2id$")[1][:40] in line for line in after.splitlines())
               for h in hashes)  # fmt: skip

    syncd.configure(passwords="hash", update_passwords=True, max_update=1.0)
    imported(syncd, "parents-3.csv", changed.replace("Spring-2027-kc", "Summer-2027-kc"))
    [updated] = syncd.events("person.updated")
    assert updated["fields"] == ["password"]
    assert "Summer-2027-kc" not in json.dumps(updated)
    _assert_no_password(syncd.audit_path.read_text("utf-8"))


def test_a_new_password_costs_one_check_and_one_hash(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each is a tenth of a second or more of argon2: a changed password, whether its row
    # changed nothing else or also a name, is checked against its stored hash once (not again
    # by the apply), and hashed once; an unchanged password of a changed row, checked once.
    calls: list[str] = []
    cheap = argon2.PasswordHasher

    class CountingHasher(cheap):  # type: ignore[misc,valid-type]
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            calls.append("hash")
            return super().hash(password, salt=salt)

        def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
            calls.append("verify")
            return bool(super().verify(hash, password))

    monkeypatch.setattr(argon2, "PasswordHasher", CountingHasher)
    syncd.configure(passwords="hash", update_passwords=True, max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents())
    calls.clear()
    changed = (
        _parents()
        .replace(PASSWORDS[0], "Spring-2027-kc")  # P1: only its password
        .replace("Peter;Sørensen", "Pete;Sørensen")  # P2: its name, not its password
        .replace("Ana;Nuñez;ana.nunez;" + PASSWORDS[2], "Anna;Nuñez;ana.nunez;Fresh-8")  # P3
    )
    imported(syncd, "parents-2.csv", changed)
    assert sorted(calls) == ["hash", "hash", "verify", "verify", "verify"]
    updated = {event["sync_key"]: event["fields"] for event in syncd.events("person.updated")}
    assert updated == {
        "P1": ["password"],
        "P2": ["first_name"],
        "P3": ["first_name", "password"],
    }


def test_revert_of_a_new_password_says_it_stays(syncd: Syncd) -> None:
    # syncd keeps no earlier password (nor its hash): a revert cannot put one back, and
    # says so instead of counting it as undone.
    syncd.configure(passwords="hash", update_passwords=True, max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents())
    changed = _parents().replace(PASSWORDS[0], "Spring-2027-kc")
    imported(syncd, "parents-2.csv", changed)
    before = _database_dump(syncd)
    [entry] = [f for f in syncd("files", "--json").json() if f["name"] == "parents-2.csv"]
    outcome = syncd("files", "revert", str(entry["id"]))
    assert outcome.exit_code == 0, outcome.stderr
    assert "0 changes undone" in outcome.stdout
    assert outcome.stderr.strip() == (
        "syncd: 1 new password stays: syncd keeps no earlier password to put back"
    )
    assert [e for e in syncd.events("person.updated") if e.get("reason") == "revert"] == []
    hashes = [line for line in before.splitlines() if "$argon2id$" in line]
    after = _database_dump(syncd)
    assert all(line.split("$argon2id$")[1][:40] in after for line in hashes)
    _assert_no_password(syncd.audit_path.read_text("utf-8"))
