"""Header names: alias matching, column maps and finding a file's kind (SPEC §2.1, §2.2)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from syncd.model import Kind

DEFAULT_GLOBS: Mapping[Kind, tuple[str, ...]] = MappingProxyType(
    {
        Kind.STUDENTS: ("*student*", "*pupil*", "*child*", "*learner*"),
        Kind.PARENTS: ("*parent*", "*guardian*", "*contact*"),
        Kind.RELATIONSHIPS: ("*relationship*", "*relation*", "*link*", "*association*"),
    }
)

# Name globs are tried in this order so that `parent_associations.csv` is a relationships file.
_GLOB_ORDER: tuple[Kind, ...] = (Kind.RELATIONSHIPS, Kind.PARENTS, Kind.STUDENTS)

# Characters a header may carry that never change its meaning: separators, BOM, zero-width space.
_IGNORED_HEADER_CHARS = frozenset(" _-.\ufeff\u200b\xa0")


# A template's mark of a required (or optional) column: `Parent Email*`, `Student ID
# (required)`. It says nothing of what the column holds.
_REQUIRED_MARK = re.compile(r"\s*(?:\*+|\((?:required|optional)\))\s*$", re.IGNORECASE)


def normalize_header(name: str) -> str:
    """Return `name` casefolded without whitespace, `_`, `-`, `.`, BOM or NBSP, and without
    a template's trailing required mark (`*`, `(required)`, `(optional)`)."""
    name = _REQUIRED_MARK.sub("", name)
    return "".join(
        char for char in name.casefold() if char not in _IGNORED_HEADER_CHARS and not char.isspace()
    )


def attribute_name(header: str) -> str:
    """Return the attribute name for a header: lowercase, non-alphanumeric runs as `_`."""
    name = re.sub(r"[\W_]+", "_", header.lower()).strip("_")
    return name or "column"


def _aliases(*names: str) -> frozenset[str]:
    return frozenset(normalize_header(name) for name in names)


# Person fields shared by students and parents files.
_PERSON_ALIASES: dict[str, frozenset[str]] = {
    "sync_key": _aliases(
        "SyncID",
        "Sync key",
        "Sync ID",
        "Sync_Key",
        "sourcedId",
        "SIS ID",
        "Person ID",
        "school_uid",
        "External ID",
        "External key",
    ),
    "username": _aliases("User name", "Username", "Login", "Login name", "User login"),
    "first_name": _aliases(
        "First name",
        "First names",
        "Given name",
        "Given names",
        "name_first",
        "Forename",
        "Forenames",
        "First",
    ),
    "last_name": _aliases(
        "Last name",
        "Family name",
        "Surname",
        "name_last",
        "Last",
    ),
    "email": _aliases("E-mail", "Email", "Email address", "E-mail address", "Mail"),
    "password": _aliases("Password"),
    "status": _aliases("Status", "Action"),
}

_STUDENT_ALIASES: dict[str, frozenset[str]] = {
    **_PERSON_ALIASES,
    "student_number": _aliases("Student number", "Student No", "StudentNumber", "Student #"),
}

_CHILD_KEY_ALIASES = _aliases(
    "ChildID",
    "Child ID",
    "Child IDs",
    "Child sync key",
    "Pupil sync key",
    "Pupil ID",
    "Student sync key",
    "Student ID",
    "Student IDs",
)

_PARENT_ALIASES: dict[str, frozenset[str]] = {
    **_PERSON_ALIASES,
    "child_key": _CHILD_KEY_ALIASES,
    # A bare `role` column is an attribute in a parents file (SPEC §2.2); these name the link.
    "relationship_type": _aliases("Relationship Type", "Relationship", "relationshipRole"),
}

_PARENT_COLUMN_ALIASES: dict[str, frozenset[str]] = {
    "parent_email": _aliases("Parent Email", "Guardian Email", "Parent email address"),
    "parent_key": _aliases(
        "Parent ID",
        "Parent sync key",
        "Parent key",
        "Parent SIS ID",
        "parent_school_uid",
        "Guardian ID",
        "Guardian sync key",
        "Guardian SIS ID",
        "relationshipUserSourcedId",
    ),
    "parent_username": _aliases("Parent username", "Guardian username", "Parent login"),
}

_STUDENT_COLUMN_ALIASES: dict[str, frozenset[str]] = {
    "student_email": _aliases("Student Email", "Child Email", "Pupil Email"),
    "student_id": _aliases(
        "Student ID",
        "Student SIS ID",
        "Student number",
        "student_school_uid",
        "userSourcedId",
        "Student sync key",
        "Child ID",
        "ChildID",
        "Child sync key",
        "Pupil ID",
        "Pupil sync key",
    ),
}

_RELATIONSHIP_ALIASES: dict[str, frozenset[str]] = {
    **_PARENT_COLUMN_ALIASES,
    **_STUDENT_COLUMN_ALIASES,
    # In a file of links, a bare `Type` can only be the link's type.
    "relationship_type": _aliases(
        "Relationship Type", "Relationship", "Role", "relationshipRole", "Type", "Relation type"
    ),
    "status": _aliases("Status", "Action"),
}

# A person's own key named after its kind (`Student ID` in a students file, `Parent ID` in
# a parents file, as a relationships file names them): the sync key when no column has a
# sync-key alias. In a parents file `Student ID` stays the child column.
_OWN_KEY_ALIASES: Mapping[Kind, frozenset[str]] = MappingProxyType(
    {
        Kind.STUDENTS: _aliases(
            "Student ID",
            "Student SIS ID",
            "Student sync key",
            "student_school_uid",
            "Pupil ID",
            "Pupil sync key",
            "Learner ID",
        ),
        Kind.PARENTS: _PARENT_COLUMN_ALIASES["parent_key"] | _aliases("Contact ID"),
    }
)

_ALIASES_BY_KIND: Mapping[Kind, dict[str, frozenset[str]]] = MappingProxyType(
    {
        Kind.STUDENTS: _STUDENT_ALIASES,
        Kind.PARENTS: _PARENT_ALIASES,
        Kind.RELATIONSHIPS: _RELATIONSHIP_ALIASES,
    }
)

_OWN_PERSON_FIELDS = ("sync_key", "username", "email", "first_name", "last_name")
_BARE_NAME = normalize_header("Name")

# Other columns that hold secrets (Initial password, OneRoster vendor extensions such as
# ext_imagineLearning_studentPassword, Passwort, Initial Pwd, Passord, Contraseña, Web
# Pass): never kept as clear-text attributes (SPEC §2.2), so dropped as read and listed as
# ignored. The header is read as its words (split at spaces, punctuation, digits and
# camelCase: studentPassword is "student password"). A word naming a secret in the
# languages of the districts syncd serves counts wherever it stands in a word; the short
# ones only as whole words, as they sit inside others (Passport, Secretary, Resenha),
# "pass" only last (Web Pass, not Pass/Fail), and the phrases (mot de passe) in the
# header's letters run together.
_SECRET_WORD_PARTS = (
    "password", "passwd", "passphrase", "passcode",
    "passwort", "kennwort",  # German
    "passord", "adgangskode", "lösenord", "losenord",  # Norwegian, Danish, Swedish
    "wachtwoord",  # Dutch
    "salasana",  # Finnish
    "contraseña", "contrasena",  # Spanish
    "hasło", "haslo",  # Polish
    "jelszó", "jelszo",  # Hungarian
    "пароль",  # Russian, Ukrainian
    "密码", "密碼", "パスワード",  # Chinese, Japanese
)  # fmt: skip
# Not PIN: SIS exports use it for ids as much as for secrets (RosarioSIS's student PIN is
# kept as an attribute, as the real samples' README says such files end).
_SECRET_WORDS = frozenset({"pw", "pwd", "secret", "passkey", "senha", "heslo"})
# Secret only as the header's last word: Web Pass, not Pass/Fail.
_SECRET_LAST_WORDS = frozenset({"pass"})
_SECRET_PHRASES = ("motdepasse", "palavrapasse")  # French, Portuguese
_WORD_SEPARATORS = re.compile(r"[\W\d_]+")


def _words(header: str) -> list[str]:
    """Return a header's words, casefolded: `ext_vendor_studentPIN2` → ext vendor student pin."""
    spaced = "".join(
        f" {char}" if index and char.isupper() and header[index - 1].islower() else char
        for index, char in enumerate(header)
    )
    return [word for word in _WORD_SEPARATORS.split(spaced.casefold()) if word]


def _is_secret_header(header: str) -> bool:
    words = _words(header)
    return (
        any(word in _SECRET_WORDS for word in words)
        or (bool(words) and words[-1] in _SECRET_LAST_WORDS)
        or any(part in word for word in words for part in _SECRET_WORD_PARTS)
        or any(phrase in "".join(words) for phrase in _SECRET_PHRASES)
    )


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Where each canonical field of a file's kind sits in its header."""

    kind: Kind
    header: tuple[str, ...]
    fields: Mapping[str, int]
    attributes: tuple[tuple[str, int], ...]
    ignored: tuple[str, ...]
    # A parents file's further child columns (`Child ID, Child ID`): their children count
    # too, as a second value in the first one's cell would (SPEC §2.3).
    more_children: tuple[int, ...] = ()

    def column_name(self, field: str) -> str:
        """Return the header text of a mapped field, or "" when the file has no such column."""
        index = self.fields.get(field)
        return "" if index is None else self.header[index]


def _field_for(normalized: str, aliases: Mapping[str, frozenset[str]]) -> str | None:
    for field, names in aliases.items():
        if normalized in names:
            return field
    return None


def map_columns(header: Sequence[str], kind: Kind, child_column: str | None = None) -> ColumnMap:
    """Return the ColumnMap of `header` for a file of `kind`.

    The first column that maps to a field wins, but for a parents file's child columns,
    which all count (`more_children`) unless `child_column` names the one child column
    ahead of its aliases. A field's later column (`Email, E-mail`) is kept as an attribute,
    as an unrecognised one is: its values are not lost unsaid (a second password column
    is dropped, as the first is unless hashed).
    """
    aliases = _ALIASES_BY_KIND[kind]
    normalized = [normalize_header(name) for name in header]
    fields: dict[str, int] = {}
    taken: set[int] = set()

    if kind is Kind.PARENTS and child_column is not None:
        wanted = normalize_header(child_column)
        for index, name in enumerate(normalized):
            if name == wanted:
                fields["child_key"] = index
                taken.add(index)
                break

    duplicates: set[int] = set()
    more_children: list[int] = []
    for index, name in enumerate(normalized):
        if index in taken:
            continue
        field = _field_for(name, aliases)
        if field is None:
            continue
        if field == "child_key" and field in fields and child_column is None:
            more_children.append(index)
        elif field in fields:
            if field == "password" or kind is Kind.RELATIONSHIPS:
                duplicates.add(index)
            else:
                continue  # an attribute (below)
        else:
            fields[field] = index
        taken.add(index)

    if "sync_key" not in fields and kind in _OWN_KEY_ALIASES:
        for index, name in enumerate(normalized):
            if index not in taken and name in _OWN_KEY_ALIASES[kind]:
                fields["sync_key"] = index
                taken.add(index)
                break

    # `Name` is the first name only beside a last-name column (RosarioSIS: Name, Surname).
    if kind is not Kind.RELATIONSHIPS and "first_name" not in fields and "last_name" in fields:
        for index, name in enumerate(normalized):
            if index not in taken and name == _BARE_NAME:
                fields["first_name"] = index
                taken.add(index)
                break

    attributes: list[tuple[str, int]] = []
    ignored: list[str] = []
    used_names: set[str] = set()
    for index, text in enumerate(header):
        if index in duplicates or (index not in taken and _is_secret_header(header[index])):
            ignored.append(text)
        elif index in taken:
            continue
        elif kind is Kind.RELATIONSHIPS:
            ignored.append(text)
        else:
            base = attribute_name(text)
            name, suffix = base, 1
            while name in used_names:
                suffix += 1
                name = f"{base}_{suffix}"
            used_names.add(name)
            attributes.append((name, index))

    return ColumnMap(
        kind=kind,
        header=tuple(header),
        fields=MappingProxyType(fields),
        attributes=tuple(attributes),
        ignored=tuple(ignored),
        more_children=tuple(more_children),
    )


def _has_any(normalized: set[str], aliases: Mapping[str, frozenset[str]]) -> bool:
    return any(normalized & names for names in aliases.values())


def detect_kind(
    file_name: str,
    header: Sequence[str],
    globs: Mapping[Kind, Sequence[str]],
    child_column: str | None = None,
) -> Kind | None:
    """Return the kind from the file name's globs, else from the header, else None."""
    base_name = file_name.replace("\\", "/").rsplit("/", 1)[-1].casefold()
    for kind in _GLOB_ORDER:
        for pattern in globs.get(kind, ()):
            if fnmatch.fnmatchcase(base_name, pattern.casefold()):
                return kind

    normalized = {normalize_header(name) for name in header} - {""}
    has_parent = _has_any(normalized, _PARENT_COLUMN_ALIASES)
    if has_parent and _has_any(normalized, _STUDENT_COLUMN_ALIASES):
        return Kind.RELATIONSHIPS
    child_names = set(_CHILD_KEY_ALIASES)
    if child_column is not None:
        child_names.add(normalize_header(child_column))
    if normalized & child_names:
        return Kind.PARENTS
    # A parent column alone is neither a person file nor a usable relationships file.
    own = {field: _PERSON_ALIASES[field] for field in _OWN_PERSON_FIELDS}
    if not has_parent and _has_any(normalized, own):
        return Kind.STUDENTS
    return None
