"""The one small interface every drop folder implements (local folder, SFTP, memory)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from syncd.formats.detect import CP1252_FALLBACK

# Names that are still being written by the usual upload tools (SPEC §3.2).
TEMP_SUFFIXES = (".tmp", ".part", ".filepart", ".partial", ".crdownload")
# `NAME.done` or `NAME.ok` (SPEC §3.2), as the tools that write them spell them (a Windows
# job writes `NAME.DONE`); the marker keeps its own spelling when archived with its file.
MARKER_SUFFIXES = (".done", ".ok", ".DONE", ".OK", ".Done", ".Ok")


@dataclass(frozen=True, slots=True)
class Entry:
    """A top-level regular file in a drop folder."""

    name: str
    size: int
    mtime: float


# The longest file name, in bytes, on Linux filesystems (and so on most SFTP servers).
NAME_MAX = 255
# Room kept for the numeric suffix of a name already taken (".99999").
SUFFIX_ROOM = 6
_MAX_SUFFIX = 100_000


def is_text_name(name: str) -> bool:
    """Return whether a file name read from the system (bytes not UTF-8 escaped as
    surrogates) is text that can be stored, logged and reported."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_name(name: str) -> str:
    """Return the text of a file name that is not UTF-8 (an old Windows client's cp1252):
    each byte that is not UTF-8 read as cp1252, as in a file's content (SPEC §2.2)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", CP1252_FALLBACK)


def fit_name(name: str, room: int = 0) -> str:
    """Return `name`, or, when it and `room` more bytes would not fit NAME_MAX, its start, a
    digest of the whole name (shortened names stay apart) and its extension."""
    encoded = name.encode("utf-8", "surrogateescape")
    limit = NAME_MAX - room
    if len(encoded) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not stem or len(extension) > 10:  # no extension worth keeping
        stem, dot, extension = name, "", ""
    tail = f"~{hashlib.sha256(encoded).hexdigest()[:10]}{dot}{extension}"
    head = stem.encode("utf-8", "surrogateescape")[: limit - len(tail.encode())]
    return head.decode("utf-8", "ignore") + tail  # a character cut in two is left out


def candidate_names(name: str) -> Iterator[str]:
    """Yield name, then stem.1.suffix, stem.2.suffix, ...: the names a file moved into a
    folder where `name` is taken may get (each fits NAME_MAX)."""
    yield fit_name(name)
    base = fit_name(name, SUFFIX_ROOM)
    stem, dot, suffix = base.rpartition(".")
    if not stem:  # ".hidden" or no dot: append the number
        stem, dot, suffix = base, "", ""
    for number in range(1, _MAX_SUFFIX):
        yield f"{stem}.{number}{dot}{suffix}" if dot else f"{base}.{number}"


def temp_name(name: str, tag: str) -> str:
    """Return the hidden name a file is written under before it is renamed to `name`."""
    return f".{fit_name(name, len(tag) + 6)}.{tag}.tmp"


# syncd's own reports (NAME.report.json, NAME.errors.csv, with a numeric suffix where the
# name was taken): `syncd import` of a file in a drop folder writes them beside it.
_REPORT_NAME = re.compile(r".+\.(report(\.\d+)?\.json|errors(\.\d+)?\.csv)", re.IGNORECASE)


def is_report_name(name: str) -> bool:
    """Return whether `name` is one syncd gives its reports."""
    return _REPORT_NAME.fullmatch(name) is not None


def is_upload_name(name: str) -> bool:
    """Return whether `name` is a file still being uploaded (temp names, hidden files)."""
    return name.startswith(".") or name.casefold().endswith(TEMP_SUFFIXES)


def is_candidate_name(name: str) -> bool:
    """Return whether a file of this name may ever be picked up (not an upload under way,
    not a report syncd wrote)."""
    return not is_upload_name(name) and not is_report_name(name)


class Source(Protocol):
    """A drop folder: list, claim by atomic rename, read, move, write reports."""

    def list_entries(self) -> list[Entry]:
        """Return the top-level regular files of the drop folder (no sub-folders)."""
        ...

    def list_processing(self) -> list[Entry]:
        """Return files left in processing/ (a crash), to be taken up again."""
        ...

    def claim(self, name: str) -> str | None:
        """Move `name` into processing/; return its new name there, None if another took it."""
        ...

    def fetch(self, processing_name: str, into: Path) -> Path:
        """Return a local path with the content of processing/`processing_name`."""
        ...

    def finish(self, processing_name: str, folder: str, final_name: str) -> str:
        """Move a processing file to `folder` (archive/…, failed, held); return where it went."""
        ...

    def work_folder(self, name: str) -> str:
        """Return where the work folder `name` (archive, held, ...) is, as the locations
        finish() returns start."""
        ...

    def size_at(self, location: str) -> int | None:
        """Return the size of the regular file at `location`, None if there is none."""
        ...

    def restore(self, location: str, name: str) -> str:
        """Move the file at `location` (as finish() returned it, or in a work folder) into
        the drop folder as `name` (suffixed if taken); return where it went."""
        ...

    def take_back(self, location: str, folder: str, final_name: str) -> str:
        """Move a file from `location` (e.g. held/) to `folder`; return where it went."""
        ...

    def holds(self, location: str) -> bool:
        """Return whether a regular file is at `location` (such as held/NAME)."""
        ...

    def fetch_location(self, location: str, into: Path) -> Path:
        """Return a local path with the content of the file at `location`."""
        ...

    def write_report(self, name: str, content: bytes) -> str:
        """Write reports/`name` without overwriting (a numeric suffix); return its path."""
        ...

    def remove_marker(self, marker: str, folder: str, name: str) -> None:
        """Move the done marker `marker` (a name in the drop folder, or a location such as
        held/NAME.done) into `folder` as `name` (its file's name there and the marker's
        suffix, so that the two pair up when the file got a numeric suffix), if it is
        there."""
        ...

    def close(self) -> None: ...
