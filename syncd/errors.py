"""The SyncdError tree: every error a user can meet carries its exit code (SPEC §5)."""

from __future__ import annotations

from typing import ClassVar


def one_line(text: str) -> str:
    """Return `text` with its control characters escaped (`\\n`, `\\t`, `\\x1b`): a file
    name may hold them, and what syncd says on a terminal is one line per thing."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


class SyncdError(Exception):
    """Base of syncd's own errors; the message is one line that names the thing and the fix."""

    exit_code: ClassVar[int] = 1


class FileFailed(SyncdError):
    """A file could not be applied (unreadable, unknown kind, too many rejected rows, limits)."""

    # How the file was read when it failed before its table was open (its header): the
    # report says so all the same.
    encoding: str | None = None
    delimiter: str | None = None


class Interrupted(FileFailed):
    """The person running `syncd import` pressed Ctrl-C while a file was being applied: its
    transaction rolls back, the file fails (nothing of it applied) and no later file starts."""


class Stopped(Exception):  # noqa: N818 - not an error: what was asked
    """The daemon (or `run --once`) was asked to stop while a file was being applied and
    the rest would take long (passwords to hash): its transaction rolls back and the file
    stays in processing/, taken up at the next start as if never begun."""


class FileUnreadable(FileFailed):
    """A drop folder's file that the source may not read (its permissions): that file
    fails, the others of the pass go on."""


class FileHeld(SyncdError):
    """A file tripped a safety threshold and waits in held/ for release or reject."""


class ConfigError(SyncdError):
    exit_code = 2


class UsageError(SyncdError):
    exit_code = 2


class SchemaOutdated(SyncdError):
    exit_code = 2


class UnreachableError(SyncdError):
    exit_code = 3


class SourceUnreachable(UnreachableError):
    pass


class SourceSetupError(SourceUnreachable):
    """A source cannot be used for something on this host: a variable its password_env or
    private_key_passphrase_env names is not set, its private_key or known_hosts file is
    missing, unreadable or unusable.

    A source that cannot be reached like any other (the daemon records it and retries: the
    host may be fixed), but the fix is the operator's configuration, so a command exits 2.
    """

    exit_code = 2


class SecretMissing(SourceSetupError):
    """The variable a source's password_env or private_key_passphrase_env names is not set."""


class HostKeyRejected(UnreachableError):
    pass


class DatabaseUnreachable(UnreachableError):
    pass


class AuditUnwritable(SyncdError):
    """The audit log cannot be written (a full disk): a command exits 3, as for a database
    it cannot reach; the daemon counts the poll as failed (/healthz 503) and tries again.
    The events are in the database all the same (SPEC §6)."""

    exit_code = 3
