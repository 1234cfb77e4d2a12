"""A drop folder on this host (file:// sources): plain files, atomic renames, no symlinks."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from syncd.config import SourceConfig
from syncd.sources.base import (
    Entry,
    candidate_names,
    is_candidate_name,
    is_text_name,
    temp_name,
    text_name,
)


def unique_target(folder: Path, name: str) -> Path:
    """Return folder/name, or folder/stem.N.suffix for the first N not taken (shortened to
    fit a file name's limit where it must be: base.candidate_names)."""
    for candidate_name in candidate_names(name):
        candidate = folder / candidate_name
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"no free name for {name} in {folder}")


def move_no_clobber(source: Path, folder: Path, name: str) -> Path:
    """Move `source` into `folder` under `name` (suffixed if taken), never overwriting.

    A hard link then unlink is atomic and fails if the target exists (rename would replace it).
    Into a folder on another filesystem ([sources.folders] may name one): a copy under a
    hidden name there, moved into place the same way, then the source removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        target = unique_target(folder, name)
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as error:
            if error.errno == errno.EXDEV:
                return _copy_no_clobber(source, folder, name)
            # Filesystems without hard links: fall back to a checked rename.
            if os.path.lexists(target):
                continue
            os.rename(source, target)
            return target
        os.unlink(source)
        return target


def _copy_no_clobber(source: Path, folder: Path, name: str) -> Path:
    temp = folder / temp_name(name, str(os.getpid()))  # a name pickup never takes
    try:
        shutil.copy2(source, temp, follow_symlinks=False)
        target = move_no_clobber(temp, folder, name)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.unlink(source)
    return target


def write_refused(folder: Path) -> str | None:
    """Return why nothing can be written in `folder`, or None: a hidden folder is made and
    removed there, as root passes os.access everywhere (not a read-only mount, /proc, a
    share that maps root to nobody)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".syncd-check-", dir=folder))
    except OSError as error:
        return str(error.strerror or error)
    return None


def write_new(folder: Path, name: str, content: bytes) -> Path:
    """Write `content` to folder/name (suffixed if taken) via a temp file and a rename."""
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / temp_name(name, str(os.getpid()))
    temp.write_bytes(content)
    return move_no_clobber(temp, folder, name)


def _renamed_as_text(folder: Path, name: str) -> str | None:
    """Return the name a file whose name is not UTF-8 is known by: its bytes read as
    base.text_name reads them. A file that may be picked up is renamed so first (every
    step after the listing, the ledger included, needs text); None if it went away."""
    text = text_name(name)
    if not is_candidate_name(text):
        return text  # an upload under way: renamed by its uploader, then by us
    try:
        return move_no_clobber(folder / name, folder, text).name
    except FileNotFoundError:
        return None


class LocalSource:
    """A file:// drop folder; implements sources.base.Source."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.root = Path(config.path)
        self.folders = config.folders

    def _folder(self, name: str) -> Path:
        return Path(getattr(self.folders, name))

    def _list(self, folder: Path) -> list[Entry]:
        entries: list[Entry] = []
        try:
            with os.scandir(folder) as scan:
                for item in scan:
                    try:
                        info = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    # lstat + S_ISREG: symlinks, folders, fifos are never picked up.
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    name: str | None = item.name
                    if not is_text_name(item.name):
                        name = _renamed_as_text(folder, item.name)
                    if name is not None:
                        entries.append(Entry(name, info.st_size, info.st_mtime))
        except FileNotFoundError:
            return []
        return entries

    def list_entries(self) -> list[Entry]:
        return self._list(self.root)

    def list_processing(self) -> list[Entry]:
        return self._list(self._folder("processing"))

    def claim(self, name: str) -> str | None:
        try:
            target = move_no_clobber(self.root / name, self._folder("processing"), name)
        except FileNotFoundError:
            return None  # another daemon claimed it first
        return target.name

    def processing_path(self, processing_name: str) -> Path:
        return self._folder("processing") / processing_name

    def fetch(self, processing_name: str, into: Path) -> Path:
        return self.processing_path(processing_name)

    def holds(self, location: str) -> bool:
        path = self.root / location  # an absolute location stays as it is
        return path.is_file() and not path.is_symlink()

    def fetch_location(self, location: str, into: Path) -> Path:
        return Path(location)

    def finish(self, processing_name: str, folder: str, final_name: str) -> str:
        return self.take_back(str(self.processing_path(processing_name)), folder, final_name)

    def work_folder(self, name: str) -> str:
        return str(self._folder(name))

    def size_at(self, location: str) -> int | None:
        try:
            info = os.lstat(self.root / location)  # an absolute location stays as it is
        except OSError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def restore(self, location: str, name: str) -> str:
        return str(move_no_clobber(self.root / location, self.root, name))

    def take_back(self, location: str, folder: str, final_name: str) -> str:
        target_folder = self._target(folder)
        return str(move_no_clobber(Path(location), target_folder, final_name))

    def _target(self, folder: str) -> Path:
        """Return the folder for "archive/2026/11/23", "failed" or "held"."""
        head, _, rest = folder.partition("/")
        base = self._folder(head)
        return base / rest if rest else base

    def write_report(self, name: str, content: bytes) -> str:
        return str(write_new(self._folder("reports"), name, content))

    def remove_marker(self, marker: str, folder: str, name: str) -> None:
        if self.holds(marker):
            move_no_clobber(self.root / marker, self._target(folder), name)

    def close(self) -> None:
        return None
