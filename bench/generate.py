"""Deterministic roster generator for the benchmarks (issue 5).

    python bench/generate.py OUT_DIR [--rows N] [--parents M] [--seed S]
                             [--changed FRACTION] [--line-ending crlf|lf]

writes OUT_DIR/students.csv (N rows) and OUT_DIR/parents.csv (M rows, default 1.5 x N);
`--kinds` adds, on request, the same parents as a parents file and a relationships file:
OUT_DIR/parents-nochild.csv and OUT_DIR/relationships.csv.

students.csv: SyncID, Username, First name, Last name, E-mail, Grade, School
parents.csv:  SyncID, User name, First name, Last name, E-mail, Password, Pupil sync key
parents-nochild.csv: the rows of parents.csv without their Pupil sync key column
relationships.csv:   Parent ID, Student ID, Relationship: one row (parent SyncID, child
                     SyncID, "Parent") per child in each parent's cell, in the parents'
                     order (about 1.5 rows a parent)

Both are comma-separated UTF-8 (no BOM); the parents' child cell names 1-3 student SyncIDs
joined by ";" and is always quoted ("S0000012;S0000013"). Names mix ASCII and non-ASCII
(Müller, Sørensen, Nuñez, O'Brien, Zoë, ...).

The same seed and sizes always give the same rows. `--changed 0.01` gives the same files
with 1% of the rows of each file different (students: a grade, a last name or an e-mail;
parents: a last name, an e-mail or one more child), drawn from a second random stream so
that every other row is byte-for-byte the row of the unchanged variant. `--line-ending lf`
writes the same rows with LF instead of CRLF: same data, different bytes (and sha256), so a
re-import is applied again instead of being skipped as a duplicate file.

Rows are streamed: memory does not depend on N.
"""

from __future__ import annotations

import argparse
import random
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FIRST_NAMES = (
    "Zoë", "Chloé", "José", "Søren", "Björn", "Ana", "Liam", "Noah", "Emma", "Olivia",
    "Mia", "Léa", "Jürgen", "Ingrid", "Siobhán", "Ólafur", "Aiden", "Yusuf", "Mei", "Hana",
    "Łukasz", "François", "Amélie", "Niamh", "Mateo", "Sofía", "Ayşe", "Emil", "Freya",
    "Oliver", "Lucas", "Maja", "Nils", "Ella", "Jonas", "Aoife", "Renée", "Zoltán", "Chiara",
    "Dmitri", "Priya", "Kai", "Leon", "Élodie", "Åsa", "Tomás", "Grace", "Jack", "Ava", "Ben",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Sørensen", "Nuñez", "O'Brien", "García", "Smith", "Johnson", "Dvořák",
    "Kowalski", "Nguyen", "Łopata", "Öztürk", "Jensen", "Hansen", "Williams", "Brown",
    "Schröder", "Lefèvre", "Fernández", "Ó Súilleabháin", "Andersson", "Virtanen", "Rossi",
    "Novák", "Papadopoulos", "Kim", "Tanaka", "MacDonald", "D'Angelo", "Weiß", "Żak",
    "Larsen", "Çelik", "Jones", "Taylor", "Martin", "Bernard", "Dubois", "Fischer", "Wagner",
)  # fmt: skip
SCHOOLS = (
    "Lincoln Elementary", "Roosevelt Middle School", "Østre Skole", "Escuela Núñez",
    "Washington High School", "St. Brigid's Primary", "Collège Jean-Zay", "Hillcrest Academy",
    "Bäckby skola", "Riverside K-8",
)  # fmt: skip
GRADES = ("K", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12")

STUDENT_HEADER = ("SyncID", "Username", "First name", "Last name", "E-mail", "Grade", "School")
PARENT_HEADER = (
    "SyncID", "User name", "First name", "Last name", "E-mail", "Password", "Pupil sync key",
)  # fmt: skip
CHILD_COLUMN = len(PARENT_HEADER) - 1
PARENT_NOCHILD_HEADER = PARENT_HEADER[:CHILD_COLUMN]
RELATIONSHIP_HEADER = ("Parent ID", "Student ID", "Relationship")
KINDS = ("students", "parents", "parents-nochild", "relationships")

_ASCII_CACHE: dict[str, str] = {}


def ascii_slug(text: str) -> str:
    """Return `text` as lower-case ASCII letters only (Müller -> muller, O'Brien -> obrien)."""
    slug = _ASCII_CACHE.get(text)
    if slug is None:
        folded = unicodedata.normalize("NFKD", text.replace("ø", "o").replace("Ø", "O"))
        folded = folded.replace("ł", "l").replace("Ł", "L").replace("ß", "ss")
        slug = "".join(c for c in folded.encode("ascii", "ignore").decode().lower() if c.isalnum())
        _ASCII_CACHE[text] = slug
    return slug


def student_key(index: int) -> str:
    return f"S{index:07d}"


def parent_key(index: int) -> str:
    return f"P{index:07d}"


def _field(value: str, always_quote: bool = False) -> str:
    if always_quote or any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


@dataclass
class Generator:
    rows: int
    parents: int
    seed: int = 2024
    changed: float = 0.0

    def students(self) -> Iterator[list[str]]:
        base = random.Random(f"{self.seed}/students")
        change = random.Random(f"{self.seed}/students/changed")
        for index in range(1, self.rows + 1):
            first = base.choice(FIRST_NAMES)
            last = base.choice(LAST_NAMES)
            grade = base.choice(GRADES)
            school = base.choice(SCHOOLS)
            domain = "students.example.org"
            if self.changed and change.random() < self.changed:
                what = change.randrange(3)
                if what == 0:
                    grade = GRADES[(GRADES.index(grade) + 1) % len(GRADES)]
                elif what == 1:
                    last = LAST_NAMES[(LAST_NAMES.index(last) + 1) % len(LAST_NAMES)]
                else:
                    domain = "pupils.example.org"
            slug_first, slug_last = ascii_slug(first), ascii_slug(last)
            yield [
                student_key(index),
                f"{slug_first[:1]}{slug_last}{index:07d}",
                first,
                last,
                f"{slug_first}.{slug_last}.{index:07d}@{domain}",
                grade,
                school,
            ]

    def parents_rows(self) -> Iterator[list[str]]:
        base = random.Random(f"{self.seed}/parents")
        change = random.Random(f"{self.seed}/parents/changed")
        for index in range(1, self.parents + 1):
            first = base.choice(FIRST_NAMES)
            last = base.choice(LAST_NAMES)
            password = f"pw-{base.getrandbits(48):012x}"
            # Siblings: 1-3 consecutive students (60% one child, 30% two, 10% three).
            roll = base.random()
            count = 1 if roll < 0.6 else 2 if roll < 0.9 else 3
            start = base.randrange(1, max(1, self.rows - count + 1) + 1)
            children = [student_key(s) for s in range(start, min(start + count, self.rows + 1))]
            domain = "parents.example.org"
            if self.changed and change.random() < self.changed:
                what = change.randrange(3)
                if what == 0:
                    last = LAST_NAMES[(LAST_NAMES.index(last) + 1) % len(LAST_NAMES)]
                elif what == 1:
                    domain = "family.example.org"
                else:
                    extra = student_key((start + 7) % self.rows + 1)
                    if extra not in children:
                        children.append(extra)
            slug_first, slug_last = ascii_slug(first), ascii_slug(last)
            yield [
                parent_key(index),
                f"{slug_first}.{slug_last}.{index:07d}",
                first,
                last,
                f"{slug_first}.{slug_last}.{index:07d}@{domain}",
                password,
                ";".join(children),
            ]

    def parents_nochild_rows(self) -> Iterator[list[str]]:
        """The parents' rows without their child cell (same stream, same values)."""
        for row in self.parents_rows():
            yield row[:CHILD_COLUMN]

    def relationships_rows(self) -> Iterator[list[str]]:
        """One (parent key, child key, "Parent") row per child named in a parent's cell."""
        for row in self.parents_rows():
            for child in row[CHILD_COLUMN].split(";"):
                yield [row[0], child, "Parent"]


def write_csv(
    path: Path,
    header: tuple[str, ...],
    rows: Iterator[list[str]],
    newline: str,
    quoted_column: int | None = None,
) -> int:
    """Write header and rows (streamed); return the number of data rows."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(_field(name) for name in header) + newline)
        batch: list[str] = []
        for row in rows:
            batch.append(
                ",".join(
                    _field(value, always_quote=(column == quoted_column))
                    for column, value in enumerate(row)
                )
                + newline
            )
            count += 1
            if len(batch) >= 10_000:
                handle.write("".join(batch))
                batch.clear()
        handle.write("".join(batch))
    return count


def generate(
    out: Path,
    rows: int,
    parents: int | None = None,
    seed: int = 2024,
    changed: float = 0.0,
    line_ending: str = "crlf",
    kinds: tuple[str, ...] = ("students", "parents"),
) -> dict[str, Path]:
    """Write the files into `out`; return {kind: path}."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds: {', '.join(sorted(unknown))}")
    out.mkdir(parents=True, exist_ok=True)
    newline = "\r\n" if line_ending == "crlf" else "\n"
    generator = Generator(
        rows=rows,
        parents=int(rows * 1.5) if parents is None else parents,
        seed=seed,
        changed=changed,
    )
    # kind: (header, rows, the column quoted whole), written in this order.
    files = {
        "students": (STUDENT_HEADER, generator.students, None),
        "parents": (PARENT_HEADER, generator.parents_rows, CHILD_COLUMN),
        "parents-nochild": (PARENT_NOCHILD_HEADER, generator.parents_nochild_rows, None),
        "relationships": (RELATIONSHIP_HEADER, generator.relationships_rows, None),
    }
    written: dict[str, Path] = {}
    for kind, (header, rows_of, quoted) in files.items():
        if kind in kinds:
            written[kind] = out / f"{kind}.csv"
            write_csv(written[kind], header, rows_of(), newline, quoted)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write students.csv and parents.csv")
    parser.add_argument("--rows", type=int, default=100_000, help="students (default 100000)")
    parser.add_argument("--parents", type=int, help="parent rows (default 1.5 x rows)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--changed", type=float, default=0.0, help="share of changed rows")
    parser.add_argument("--line-ending", choices=("crlf", "lf"), default="crlf")
    parser.add_argument(
        "--kinds",
        default="students,parents",
        help=f"comma-separated subset of: {','.join(KINDS)}",
    )
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    written = generate(
        args.out, args.rows, args.parents, args.seed, args.changed, args.line_ending, kinds
    )
    for kind, path in written.items():
        print(f"{kind}: {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
