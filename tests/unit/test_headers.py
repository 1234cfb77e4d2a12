"""syncd.formats.headers: header aliases, column maps, attribute names and kind detection."""

from __future__ import annotations

import pytest

from syncd.formats.headers import (
    DEFAULT_GLOBS,
    attribute_name,
    detect_kind,
    map_columns,
    normalize_header,
)
from syncd.model import Kind

# --- normalize_header and attribute_name --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "normalized"),
    [
        ("Sync ID", "syncid"),
        ("sync_key", "synckey"),
        ("E-mail", "email"),
        ("name.first", "namefirst"),
        ("\ufeffSyncID", "syncid"),
        ("First\xa0name", "firstname"),
        ("  LAST NAME\t", "lastname"),
        ("Straße", "strasse"),
        # A template's required marks (the school app's own relationship template).
        ("Parent Email*", "parentemail"),
        ("Student ID *", "studentid"),
        ("Relationship Type (Required)", "relationshiptype"),
        ("E-mail (optional)", "email"),
        ("Notes (required by law)", "notes(requiredbylaw)"),
    ],
)
def test_normalize_header_ignores_case_and_separators(header: str, normalized: str) -> None:
    assert normalize_header(header) == normalized


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Account #", "account"),
        ("School SIS ID", "school_sis_id"),
        ("Grade", "grade"),
        ("  Date of birth (DOB) ", "date_of_birth_dob"),
        ("p-first name", "p_first_name"),
        ("Größe", "größe"),
        ("###", "column"),
        ("", "column"),
    ],
)
def test_attribute_name_is_lowercase_with_underscores(header: str, name: str) -> None:
    assert attribute_name(header) == name


# --- map_columns --------------------------------------------------------------------------------


def test_students_header_maps_fields_and_keeps_other_columns_as_attributes() -> None:
    header = ["SyncID", "Username", "First name", "Last name", "E-mail", "Grade", "School"]
    column_map = map_columns(header, Kind.STUDENTS)
    assert dict(column_map.fields) == {
        "sync_key": 0,
        "username": 1,
        "first_name": 2,
        "last_name": 3,
        "email": 4,
    }
    assert column_map.attributes == (("grade", 5), ("school", 6))
    assert column_map.ignored == ()
    assert column_map.header == tuple(header)


PERSON_ALIASES = [
    (
        "sync_key",
        ["SyncID", "Sync key", "Sync ID", "sourcedId", "SIS ID", "Person ID", "school_uid"],
    ),
    ("sync_key", ["External ID", "Sync_Key", "SYNC-KEY"]),
    ("username", ["User name", "Username", "Login", "Login name"]),
    ("first_name", ["First name", "Given name", "name_first", "Forename", "First", "givenName"]),
    ("last_name", ["Last name", "Family name", "Surname", "name_last", "Last", "familyName"]),
    ("email", ["E-mail", "Email", "Email address", "Mail", "EMAIL ADDRESS"]),
    ("password", ["Password"]),
    ("status", ["Status", "Action"]),
]


@pytest.mark.parametrize("kind", [Kind.STUDENTS, Kind.PARENTS])
@pytest.mark.parametrize(("field", "aliases"), PERSON_ALIASES)
def test_person_aliases_map_to_their_field(kind: Kind, field: str, aliases: list[str]) -> None:
    for alias in aliases:
        assert map_columns([alias], kind).fields == {field: 0}, alias


@pytest.mark.parametrize("alias", ["Student number", "Student No", "StudentNumber"])
def test_student_number_is_a_students_file_field(alias: str) -> None:
    assert map_columns([alias], Kind.STUDENTS).fields == {"student_number": 0}


@pytest.mark.parametrize(
    "alias",
    [
        "ChildID",
        "Child ID",
        "Child IDs",
        "Pupil sync key",
        "Student sync key",
        "Student ID",
        "Student IDs",
        "Child sync key",
    ],
)
def test_child_key_aliases_map_in_a_parents_file(alias: str) -> None:
    assert map_columns([alias], Kind.PARENTS).fields == {"child_key": 0}


RELATIONSHIP_ALIASES = [
    ("parent_email", ["Parent Email", "Guardian Email", "parent e-mail"]),
    (
        "parent_key",
        [
            "Parent ID",
            "Parent sync key",
            "Guardian ID",
            "Parent SIS ID",
            "parent_school_uid",
            "relationshipUserSourcedId",
        ],
    ),
    ("parent_username", ["Parent username", "Guardian username"]),
    ("student_email", ["Student Email", "Child Email"]),
    (
        "student_id",
        [
            "Student ID",
            "Student SIS ID",
            "Student number",
            "student_school_uid",
            "userSourcedId",
            "Student sync key",
            "Child ID",
        ],
    ),
    (
        "relationship_type",
        ["Relationship Type", "Relationship", "Role", "relationshipRole", "Type", "Relation type"],
    ),
    ("status", ["Status", "Action"]),
]


@pytest.mark.parametrize(("field", "aliases"), RELATIONSHIP_ALIASES)
def test_relationship_aliases_map_to_their_field(field: str, aliases: list[str]) -> None:
    for alias in aliases:
        assert map_columns([alias], Kind.RELATIONSHIPS).fields == {field: 0}, alias


def test_name_is_the_first_name_beside_a_surname() -> None:
    column_map = map_columns(["Name", "Surname", "Account #", "Email"], Kind.STUDENTS)
    assert dict(column_map.fields) == {"first_name": 0, "last_name": 1, "email": 3}
    assert column_map.attributes == (("account", 2),)


def test_name_without_a_last_name_column_is_an_attribute() -> None:
    column_map = map_columns(["SyncID", "Name"], Kind.STUDENTS)
    assert dict(column_map.fields) == {"sync_key": 0}
    assert column_map.attributes == (("name", 1),)


def test_name_beside_a_first_name_column_is_an_attribute() -> None:
    column_map = map_columns(["Name", "First name", "Last name"], Kind.STUDENTS)
    assert dict(column_map.fields) == {"first_name": 1, "last_name": 2}
    assert column_map.attributes == (("name", 0),)


@pytest.mark.parametrize("kind", [Kind.STUDENTS, Kind.PARENTS])
def test_role_column_is_an_attribute_in_person_files(kind: Kind) -> None:
    column_map = map_columns(["SyncID", "Role"], kind)
    assert "relationship_type" not in column_map.fields
    assert column_map.attributes == (("role", 1),)


@pytest.mark.parametrize("alias", ["Relationship Type", "Relationship"])
def test_relationship_type_maps_in_a_parents_file(alias: str) -> None:
    assert map_columns([alias], Kind.PARENTS).fields == {"relationship_type": 0}


def test_relationship_columns_are_attributes_in_a_students_file() -> None:
    column_map = map_columns(["SyncID", "Relationship", "Student ID"], Kind.STUDENTS)
    assert dict(column_map.fields) == {"sync_key": 0}
    assert column_map.attributes == (("relationship", 1), ("student_id", 2))


@pytest.mark.parametrize(
    ("kind", "header"),
    [
        (Kind.STUDENTS, ["Student ID", "First name", "Last name", "Grade"]),
        (Kind.STUDENTS, ["Pupil sync key", "First name", "Last name"]),
        (Kind.PARENTS, ["Parent ID", "First name", "Last name", "Student ID"]),
        (Kind.PARENTS, ["Guardian SIS ID", "First name", "Last name", "Child ID"]),
    ],
)
def test_a_key_named_after_the_files_kind_is_its_sync_key_when_none_has_an_alias(
    kind: Kind, header: list[str]
) -> None:
    # As a relationships file names them (Parent ID, Student ID): the two files then match.
    fields = map_columns(header, kind).fields
    assert fields["sync_key"] == 0
    if kind is Kind.PARENTS:
        assert fields["child_key"] == 3


def test_a_sync_key_alias_comes_before_a_key_named_after_the_kind() -> None:
    column_map = map_columns(["Parent ID", "SyncID", "First name", "Last name"], Kind.PARENTS)
    assert column_map.fields["sync_key"] == 1
    assert column_map.attributes == (("parent_id", 0),)


def test_named_child_column_is_the_child_key_ahead_of_aliases() -> None:
    header = ["Student ID", "Parent's kids", "Email"]
    column_map = map_columns(header, Kind.PARENTS, child_column="parent's KIDS")
    assert dict(column_map.fields) == {"child_key": 1, "email": 2}
    assert column_map.attributes == (("student_id", 0),)  # kept, not lost unsaid
    assert column_map.ignored == ()
    assert column_map.column_name("child_key") == "Parent's kids"


def test_first_column_of_a_field_wins_and_a_later_one_is_kept_as_an_attribute() -> None:
    # `Email, E-mail`: the first sets the field; the second's values are kept, as any
    # unrecognised column's are, where dropping them would lose an address unsaid.
    header = ["Sync ID", "SIS ID", "First name", "Email", "E-mail", "Password", "Pwd", "Last name"]
    column_map = map_columns(header, Kind.STUDENTS)
    assert dict(column_map.fields) == {
        "sync_key": 0, "first_name": 2, "email": 3, "password": 5, "last_name": 7,
    }  # fmt: skip
    assert column_map.attributes == (("sis_id", 1), ("e_mail", 4))
    assert column_map.ignored == ("Pwd",)
    relationships = map_columns(["Parent ID", "Guardian ID", "Student ID"], Kind.RELATIONSHIPS)
    assert relationships.ignored == ("Guardian ID",)  # no attributes there


def test_named_child_column_missing_from_header_falls_back_to_aliases() -> None:
    column_map = map_columns(["Email", "Pupil sync key"], Kind.PARENTS, child_column="ChildID")
    assert column_map.fields["child_key"] == 1


def test_child_column_is_not_used_outside_parents_files() -> None:
    column_map = map_columns(["SyncID", "Kids"], Kind.STUDENTS, child_column="Kids")
    assert column_map.attributes == (("kids", 1),)


def test_attribute_names_are_deduplicated_with_numbers() -> None:
    column_map = map_columns(["SyncID", "Grade", "grade", "GRADE!", ""], Kind.STUDENTS)
    assert column_map.attributes == (("grade", 1), ("grade_2", 2), ("grade_3", 3), ("column", 4))


def test_unknown_columns_of_a_relationships_file_are_ignored() -> None:
    header = ["Parent Email", "Student ID", "Notes", "Name"]
    column_map = map_columns(header, Kind.RELATIONSHIPS)
    assert dict(column_map.fields) == {"parent_email": 0, "student_id": 1}
    assert column_map.attributes == ()
    assert column_map.ignored == ("Notes", "Name")


def test_column_name_gives_header_text_or_empty() -> None:
    column_map = map_columns(["Pupil sync key", "E-mail"], Kind.PARENTS)
    assert column_map.column_name("child_key") == "Pupil sync key"
    assert column_map.column_name("email") == "E-mail"
    assert column_map.column_name("sync_key") == ""


def test_non_ascii_headers_become_attributes() -> None:
    column_map = map_columns(["Sync ID", "Klassenstufe für Zoë"], Kind.STUDENTS)
    assert column_map.attributes == (("klassenstufe_für_zoë", 1),)


# --- detect_kind --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "kind"),
    [
        ("students.csv", Kind.STUDENTS),
        ("Student.csv", Kind.STUDENTS),
        ("PUPILS_2026.XLSX", Kind.STUDENTS),
        ("children", Kind.STUDENTS),
        ("learners.tsv", Kind.STUDENTS),
        ("parents.csv", Kind.PARENTS),
        ("Guardians.txt", Kind.PARENTS),
        ("errant_contacts.xls", Kind.PARENTS),
        ("relationships.xlsx", Kind.RELATIONSHIPS),
        ("parent_associations.csv", Kind.RELATIONSHIPS),
        ("student-parent-links.csv", Kind.RELATIONSHIPS),
        ("parent_relations.csv", Kind.RELATIONSHIPS),
        ("incoming/students/guardians.csv", Kind.PARENTS),
    ],
)
def test_kind_is_found_from_the_file_name(file_name: str, kind: Kind) -> None:
    assert detect_kind(file_name, ["whatever"], DEFAULT_GLOBS) is kind


def test_configured_globs_replace_the_defaults() -> None:
    globs = {Kind.STUDENTS: ["elev*"], Kind.PARENTS: ["foresatt*"]}
    assert detect_kind("Elever.csv", [], globs) is Kind.STUDENTS
    assert detect_kind("foresatte.csv", [], globs) is Kind.PARENTS
    assert detect_kind("students.csv", [], globs) is None


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (["Parent Email", "Student ID", "Relationship Type"], Kind.RELATIONSHIPS),
        (["parent_school_uid", "student_school_uid"], Kind.RELATIONSHIPS),
        (["userSourcedId", "relationshipUserSourcedId", "relationshipRole"], Kind.RELATIONSHIPS),
        (["First name", "Last name", "E-mail", "Pupil sync key"], Kind.PARENTS),
        (["Email", "Child IDs"], Kind.PARENTS),
        (["SyncID", "First name", "Last name", "Grade"], Kind.STUDENTS),
        (["Name", "Surname", "Gender", "Birthdate", "Account #", "PIN", "Email"], Kind.STUDENTS),
        (
            [
                "last name",
                "first name",
                "middle name",
                "gender",
                "common name",
                "birthdate",
                "grade id",
            ],
            Kind.STUDENTS,
        ),
        (
            [
                "userSourcedId",
                "orgSourcedId",
                "role",
                "sessionSourcedId",
                "grade",
                "isPrimary",
                "roleStartDate",
                "roleEndDate",
            ],
            None,
        ),
        (["propertyName", "value"], None),
        (["Parent Email", "First name", "Last name"], None),
        ([], None),
        (["", " "], None),
    ],
)
def test_kind_is_found_from_the_header(header: list[str], kind: Kind | None) -> None:
    assert detect_kind("upload.csv", header, DEFAULT_GLOBS) is kind


def test_named_child_column_makes_a_parents_file() -> None:
    header = ["Email", "First name", "Last name", "Kids"]
    assert detect_kind("export.csv", header, DEFAULT_GLOBS) is Kind.STUDENTS
    assert detect_kind("export.csv", header, DEFAULT_GLOBS, child_column="kids") is Kind.PARENTS


def test_file_name_wins_over_header() -> None:
    header = ["Parent Email", "Student ID"]
    assert detect_kind("students.csv", header, DEFAULT_GLOBS) is Kind.STUDENTS


def test_default_globs_follow_the_spec() -> None:
    assert DEFAULT_GLOBS[Kind.STUDENTS] == ("*student*", "*pupil*", "*child*", "*learner*")
    assert DEFAULT_GLOBS[Kind.PARENTS] == ("*parent*", "*guardian*", "*contact*")
    assert DEFAULT_GLOBS[Kind.RELATIONSHIPS] == (
        "*relationship*",
        "*relation*",
        "*link*",
        "*association*",
    )


def test_a_parents_files_further_child_columns_all_count() -> None:
    column_map = map_columns(["SyncID", "Child ID", "Email", "ChildID"], Kind.PARENTS)
    assert (column_map.fields["child_key"], column_map.more_children) == (1, (3,))
    assert column_map.ignored == ()
    # A child column named in the config is the one: its aliases' columns are not children.
    named = map_columns(["SyncID", "Kids", "Child ID"], Kind.PARENTS, child_column="Kids")
    assert (named.fields["child_key"], named.more_children) == (1, ())
    assert named.attributes == (("child_id", 2),)


SECRET_HEADERS = (
    "Initial Pwd", "Passord", "Passphrase", "Contraseña", "Pw", "Pass", "Secret",
    "Lösenord", "Wachtwoord", "Hasło", "Senha", "Salasana", "Passcode", "Mot de passe",
    "Kennwort", "Parent Password", "TempPassword", "Student Pw", "Web Pass",
    "Parent Secret", "Passkey", "Secret key", "Heslo", "Jelszó", "Пароль", "密码",
    "Palavra-passe", "ext_imagineLearning_studentPassword", "Password2",
)  # fmt: skip


@pytest.mark.parametrize("header", SECRET_HEADERS)
def test_a_secret_column_in_any_language_is_dropped_never_an_attribute(header: str) -> None:
    column_map = map_columns(["SyncID", "First name", "Last name", header], Kind.PARENTS)
    assert column_map.attributes == ()
    assert column_map.ignored == (header,)


@pytest.mark.parametrize(
    "header",
    [
        "Passport", "Secretary", "Shipping", "Spinning club", "Resenha", "Bypass Word List",
        "Spine", "Pinecrest School", "Passing grade", "Compass group", "Pass/Fail", "PIN",
        "Student PIN",
    ],
)  # fmt: skip
def test_words_holding_a_short_secret_word_stay_attributes(header: str) -> None:
    column_map = map_columns(["SyncID", "First name", "Last name", header], Kind.STUDENTS)
    assert [name for name, _ in column_map.attributes] == [attribute_name(header)]
