"""A source's known_hosts file, read as OpenSSH reads it (SPEC §3.1: host keys are checked
against it, an unknown or changed key refuses the connection, nothing is ever added).

paramiko's own reader keeps one key per host and key type (a stale line before the right one
hides it) and fails the whole file on a line it cannot parse (`@cert-authority`, bad base64).
OpenSSH accepts a key that any line for the host holds, refuses one a `@revoked` line names,
and skips lines it cannot use; so does this reader.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from paramiko.hostkeys import HostKeyEntry


@dataclass(frozen=True, slots=True)
class _Line:
    patterns: tuple[str, ...]
    key: Any  # paramiko.PKey


@dataclass(slots=True)
class KnownHosts:
    """The usable lines of a known_hosts file."""

    lines: list[_Line] = field(default_factory=list)
    revoked: list[_Line] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> KnownHosts:
        """Read `path` (OSError when it cannot be read); unusable lines are skipped."""
        known = cls()
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            marker = None
            if text.startswith("@"):
                marker, _, text = text.partition(" ")
            if marker not in (None, "@revoked"):
                continue  # @cert-authority: certificates are not used here
            line = _parse(text)
            if line is not None:
                (known.revoked if marker else known.lines).append(line)
        return known

    def verdict(self, host: str, key: Any) -> str:
        """Return "known", "revoked" (a @revoked line names the key), "changed" (the host
        is listed with other keys only) or "unknown" for `key` presented by `host` ("name"
        on port 22, else "[name]:port", as in the file)."""
        if any(_same_key(line.key, key) for line in self.revoked):
            return "revoked"
        listed = [line for line in self.lines if _names(line.patterns, host)]
        if any(_same_key(line.key, key) for line in listed):
            return "known"
        return "changed" if listed else "unknown"

    def key_types(self, host: str) -> set[str]:
        """Return the host key algorithms of the keys listed for `host` (as `verdict` names
        it): the client asks for these first, as OpenSSH does, so that a server with several
        host keys shows one that known_hosts holds."""
        names = {line.key.get_name() for line in self.lines if _names(line.patterns, host)}
        return {algorithm for name in names for algorithm in _ALGORITHMS.get(name, (name,))}


# A key type's signature algorithms where they differ from its name.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


def _parse(text: str) -> _Line | None:
    try:
        entry = HostKeyEntry.from_line(text)
    except Exception:  # noqa: BLE001 - bad base64, unknown key type: OpenSSH skips the line
        return None
    if entry is None or entry.key is None:
        return None
    return _Line(tuple(entry.hostnames), entry.key)


def _names(patterns: tuple[str, ...], host: str) -> bool:
    """Whether a line's host patterns name `host`: plain or hashed names, `*`/`?` patterns,
    and `!pattern` that excludes it."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            try:
                hit = paramiko.HostKeys.hash_host(host, pattern) == pattern
            except Exception:  # noqa: BLE001 - a malformed hash names no host
                hit = False
        elif "*" in pattern or "?" in pattern:  # "[host]:port" brackets are literal
            hit = fnmatch.fnmatchcase(host.lower(), pattern.lower().replace("[", "[[]"))
        else:
            hit = host.lower() == pattern.lower()
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def _same_key(known: Any, presented: Any) -> bool:
    return bool(known.get_name() == presented.get_name() and known.asbytes() == presented.asbytes())
