"""TOML configuration → frozen Config dataclasses; every problem names its key path (SPEC §8).

`load_config` reads and validates one file and raises `ConfigError` (exit code 2) with one
line, `PATH: KEY.PATH: PROBLEM`, for the first problem it finds: an unknown key, a value of
the wrong type, or a value out of range. Values are echoed only where they cannot be secret.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import posixpath
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path, PurePath, PurePosixPath
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncd.errors import ConfigError, UsageError
from syncd.model import ChildField, Kind, Limits, Mode, PasswordPolicy, RelType

__all__ = [
    "AUDIT_KEYS",
    "METRICS_KEYS",
    "DATABASE_KEYS",
    "DEFAULT_GLOBS",
    "DEFAULT_SITE",
    "FOLDER_NAMES",
    "SOURCE_KEYS",
    "TOP_LEVEL_KEYS",
    "Config",
    "Folders",
    "SourceConfig",
    "find_config_path",
    "load_config",
    "local_source",
    "parse_duration",
    "parse_size",
]

# Where `find_config_path` looks after --config and $SYNCD_CONFIG (SPEC §5).
CONFIG_ENV = "SYNCD_CONFIG"
LOCAL_CONFIG = Path("config.toml")
SYSTEM_CONFIG = Path("/etc/syncd/config.toml")

# The site used by `Config.site(None)` when no source is configured (import/export only).
DEFAULT_SITE = "default"

DEFAULT_POLL = timedelta(seconds=60)

DEFAULT_GLOBS: Mapping[Kind, tuple[str, ...]] = MappingProxyType(
    {
        Kind.STUDENTS: ("*student*", "*pupil*", "*child*", "*learner*"),
        Kind.PARENTS: ("*parent*", "*guardian*", "*contact*"),
        Kind.RELATIONSHIPS: ("*relationship*", "*relation*", "*link*", "*association*"),
    }
)

FOLDER_NAMES: tuple[str, ...] = ("processing", "held", "archive", "failed", "reports")

TOP_LEVEL_KEYS: frozenset[str] = frozenset({"database", "audit", "metrics", "sources"})
METRICS_KEYS: frozenset[str] = frozenset({"listen"})
DATABASE_KEYS: frozenset[str] = frozenset({"url"})
AUDIT_KEYS: frozenset[str] = frozenset({"path"})
SOURCE_KEYS: frozenset[str] = frozenset(
    {
        "name",
        "site",
        "url",
        "poll",
        "cron",
        "timezone",
        "min_age",
        "done_marker",
        "child_field",
        "child_column",
        "mode",
        "max_deactivate",
        "max_update",
        "max_reject",
        "dependency_wait",
        "pending_ttl",
        "deactivate_orphan_parents",
        "passwords",
        "update_passwords",
        "known_hosts",
        "private_key",
        "private_key_passphrase_env",
        "password_env",
        "max_file_size",
        "max_field_chars",
        "max_columns",
        "globs",
        "relationship_types",
        "folders",
    }
)

# Keys that would put a secret in the file: refused with a pointer to the *_env key.
_REFUSED_SOURCE_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "password": "never put a password in the file; use password_env",
        "private_key_passphrase": (
            "never put a passphrase in the file; use private_key_passphrase_env"
        ),
    }
)

_KIND_KEYS: frozenset[str] = frozenset(kind.value for kind in Kind)

_DURATION_UNITS: Mapping[str, float] = MappingProxyType(
    {
        "ms": 0.001,
        "millisecond": 0.001,
        "milliseconds": 0.001,
        "s": 1,
        "sec": 1,
        "secs": 1,
        "second": 1,
        "seconds": 1,
        "m": 60,
        "min": 60,
        "mins": 60,
        "minute": 60,
        "minutes": 60,
        "h": 3600,
        "hr": 3600,
        "hrs": 3600,
        "hour": 3600,
        "hours": 3600,
        "d": 86400,
        "day": 86400,
        "days": 86400,
        "w": 604800,
        "week": 604800,
        "weeks": 604800,
    }
)
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)

_SIZE_UNITS: Mapping[str, int] = MappingProxyType(
    {
        "": 1,
        "b": 1,
        "kb": 1000,
        "mb": 1000**2,
        "gb": 1000**3,
        "tb": 1000**4,
        "kib": 1024,
        "mib": 1024**2,
        "gib": 1024**3,
        "tib": 1024**4,
    }
)
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DATABASE_URL = re.compile(r"([a-z][a-z0-9]*)(\+[a-z0-9_]+)?://(.*)", re.IGNORECASE | re.DOTALL)

_E = TypeVar("_E", bound=StrEnum)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Folders:
    """A source's work folders.

    For file:// sources these are absolute `Path`s (relative names resolved against the drop
    folder); for sftp:// sources `PurePosixPath`s, relative ones meaning "under the remote
    folder".
    """

    processing: PurePath
    held: PurePath
    archive: PurePath
    failed: PurePath
    reports: PurePath


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One `[[sources]]` entry: a drop folder for one site, with its policy."""

    name: str
    site: str
    url: str
    scheme: str  # "file" or "sftp"
    path: str  # absolute local folder (file) or remote folder (sftp)
    folders: Folders
    host: str | None = None
    port: int = 22
    user: str | None = None
    poll: timedelta | None = DEFAULT_POLL
    cron: str | None = None
    timezone: str = "UTC"
    min_age: timedelta = timedelta(seconds=10)
    done_marker: bool = False
    child_field: ChildField = ChildField.SYNC_KEY
    child_column: str | None = None
    modes: Mapping[Kind, Mode] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(Kind, Mode.FULL))
    )
    max_deactivate: float = 0.10
    max_update: float = 0.75
    max_reject: float = 0.5
    dependency_wait: timedelta = timedelta(minutes=30)
    pending_ttl: timedelta = timedelta(days=14)
    deactivate_orphan_parents: bool = True
    passwords: PasswordPolicy = PasswordPolicy.DROP
    update_passwords: bool = False
    known_hosts: Path | None = None
    private_key: Path | None = None
    private_key_passphrase_env: str | None = None
    password_env: str | None = None
    limits: Limits = field(default_factory=Limits)
    globs: Mapping[Kind, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_GLOBS)
    relationship_types: Mapping[str, RelType] = field(default_factory=lambda: MappingProxyType({}))

    def mode_for(self, kind: Kind) -> Mode:
        """Return the mode (full or delta) of this source's files of `kind`."""
        return self.modes.get(kind, Mode.FULL)

    @property
    def is_sftp(self) -> bool:
        return self.scheme == "sftp"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration file, validated; paths in it are absolute."""

    path: Path
    database_url: str
    audit_path: str
    sources: tuple[SourceConfig, ...] = ()
    # Where `syncd run` serves Prometheus metrics and health: (host, port), or None (off).
    metrics_listen: tuple[str, int] | None = None

    @property
    def sites(self) -> tuple[str, ...]:
        """Return the distinct sites of the sources, in file order."""
        return tuple(dict.fromkeys(source.site for source in self.sources))

    def source(self, name: str | None) -> SourceConfig:
        """Return the source called `name` (or the only one); raise UsageError otherwise."""
        if name is None:
            if not self.sources:
                raise UsageError("no sources configured")
            if len(self.sources) > 1:
                raise UsageError("several sources: pass --source NAME")
            return self.sources[0]
        for source in self.sources:
            if source.name == name:
                return source
        if not self.sources:
            raise UsageError(f'no source "{name}": no sources configured')
        known = ", ".join(source.name for source in self.sources)
        raise UsageError(f'no source "{name}"; known sources: {known}')

    def site(self, name: str | None) -> str:
        """Return the site `name` (or the only one; "default" without sources).

        Raises UsageError when `name` is None and there are several sites, or when `name`
        is not the site of any source. With no sources configured any name is accepted.
        """
        sites = self.sites
        if name is None:
            if not sites:
                return DEFAULT_SITE
            if len(sites) > 1:
                raise UsageError("several sites: pass --site SITE")
            return sites[0]
        if not sites or name in sites:
            return name
        raise UsageError(f'no site "{name}"; known sites: {", ".join(sites)}')


def default_folders(scheme: str, path: str) -> Folders:
    """Return the default work folders: sub-folders of the drop folder (SPEC §3.2)."""
    if scheme == "sftp":
        return Folders(*(PurePosixPath(name) for name in FOLDER_NAMES))
    return Folders(*(Path(path) / name for name in FOLDER_NAMES))


def local_source(
    folder: Path, name: str = "local", site: str | None = None, **overrides: Any
) -> SourceConfig:
    """Return a file:// SourceConfig on `folder` with defaults, for tests and `syncd import`."""
    absolute = os.path.abspath(folder)
    source = SourceConfig(
        name=name,
        site=name if site is None else site,
        url=Path(absolute).as_uri(),
        scheme="file",
        path=absolute,
        folders=default_folders("file", absolute),
    )
    return dataclasses.replace(source, **overrides) if overrides else source


# --------------------------------------------------------------------------- parsing


def parse_duration(text: str) -> timedelta:
    """Return the timedelta of "10s", "30min", "1h30m", "500ms", "14d"; raise ValueError else."""
    if not isinstance(text, str):
        raise ValueError(f"not a duration: {text!r}")
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"not a duration: {text!r}")
    seconds = 0.0
    position = 0
    while position < len(stripped):
        match = _DURATION_PART.match(stripped, position)
        if match is None or match.group(2).lower() not in _DURATION_UNITS:
            raise ValueError(f"not a duration: {text!r}")
        if match.group(2) == "M":  # units are read in any case, but "1M" may mean a month
            raise ValueError(f'not a duration: {text!r} ("M" could be months: write "min")')
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        position = match.end()
    try:
        return timedelta(seconds=seconds)
    except OverflowError as error:
        raise ValueError(f"duration too long: {text!r}") from error


def parse_size(value: int | str) -> int:
    """Return a byte count from 2147483648, "2GiB", "100MB", "512KiB"; raise ValueError else."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"not a size: {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a size: {value!r}")
    match = _SIZE.fullmatch(value)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as error:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"not a size: {value!r}") from error
    return int(number * _SIZE_UNITS[match.group(2).lower()])


# --------------------------------------------------------------------------- lookup


def find_config_path(explicit: str | None) -> Path:
    """Return the configuration file to use (SPEC §5); raise ConfigError when there is none.

    Order: `explicit` (--config), then $SYNCD_CONFIG, then ./config.toml, then
    /etc/syncd/config.toml. A file named by --config or $SYNCD_CONFIG must exist: it is
    never silently replaced by a later candidate.
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: no such configuration file (given by --config)")
        return path
    from_env = os.environ.get(CONFIG_ENV, "")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"{path}: no such configuration file (given by {CONFIG_ENV})")
        return path
    for candidate in (LOCAL_CONFIG, SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no configuration file: pass --config PATH or set {CONFIG_ENV}")


# --------------------------------------------------------------------------- loading


class _Invalid(Exception):
    """A problem at one key path; `load_config` turns it into a ConfigError line."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def load_config(path: Path) -> Config:
    """Return the validated configuration in `path`; raise ConfigError with one line else."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        # Notepad and other Windows editors start UTF-8 files with a byte order mark.
        document = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"{path}: not valid TOML: {message}") from None
    try:
        return _build_config(path, document)
    except _Invalid as invalid:
        message = " ".join(f"{path}: {invalid.key}: {invalid.problem}".split())
        raise ConfigError(message) from None


def _build_config(path: Path, document: dict[str, Any]) -> Config:
    config_path = Path(os.path.abspath(path))
    config_dir = config_path.parent
    _check_keys(document, TOP_LEVEL_KEYS, "")

    database = _table(document.get("database", {}), "database")
    _check_keys(database, DATABASE_KEYS, "database")
    if "url" in database:
        database_url = _database_url(database["url"], config_dir)
    else:
        database_url = "sqlite:///" + str(config_dir / "syncd.db")

    audit = _table(document.get("audit", {}), "audit")
    _check_keys(audit, AUDIT_KEYS, "audit")
    if "path" in audit:
        audit_value = _string(audit["path"], "audit.path")
        audit_path = audit_value if audit_value == "-" else _local_path(audit_value, config_dir)
    else:
        audit_path = str(config_dir / "audit.jsonl")

    metrics = _table(document.get("metrics", {}), "metrics")
    _check_keys(metrics, METRICS_KEYS, "metrics")
    metrics_listen = (
        _listen_address(_string(metrics["listen"], "metrics.listen"), "metrics.listen")
        if "listen" in metrics
        else None
    )

    raw_sources = document.get("sources", [])
    if not isinstance(raw_sources, list):
        raise _Invalid("sources", "must be a list of [[sources]] tables")
    sources: list[SourceConfig] = []
    for index, raw in enumerate(raw_sources):
        key = f"sources[{index}]"
        source = _build_source(_table(raw, key), key, config_dir)
        for earlier_index, earlier in enumerate(sources):
            if earlier.name == source.name:
                raise _Invalid(
                    f"{key}.name",
                    f"duplicate source name {source.name!r} (also sources[{earlier_index}])",
                )
            if _place(earlier, earlier.path) == _place(source, source.path):
                raise _Invalid(
                    f"{key}.url", f"same folder as sources[{earlier_index}] ({earlier.name!r})"
                )
            # Each source's claims are its own (a pass takes up what its ledger claimed there).
            if _place(earlier, earlier.folders.processing) == _place(
                source, source.folders.processing
            ):
                raise _Invalid(
                    f"{key}.folders.processing",
                    f"same folder as sources[{earlier_index}].folders.processing "
                    f"({earlier.name!r}): each source needs its own",
                )
        sources.append(source)

    return Config(
        path=config_path,
        database_url=database_url,
        audit_path=audit_path,
        sources=tuple(sources),
        metrics_listen=metrics_listen,
    )


def _place(source: SourceConfig, folder: str | PurePath) -> tuple[Any, ...]:
    """Where a source's folder is, to tell two sources' folders apart: on an SFTP server, in
    the account of its user (each is often jailed to its own upload folder), a relative work
    folder under the drop folder; on this host, the path itself."""
    if source.scheme != "sftp":
        return (source.scheme, str(folder))
    where = posixpath.normpath(posixpath.join(source.path, str(folder)))
    return (source.scheme, source.user, source.host, source.port, where)


def _listen_address(value: str, key: str) -> tuple[str, int]:
    """Parse "HOST:PORT" (or ":PORT", meaning 127.0.0.1) for the metrics endpoint."""
    host, separator, port = value.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise _Invalid(key, f"not HOST:PORT: {value!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


def _build_source(raw: dict[str, Any], key: str, config_dir: Path) -> SourceConfig:
    for name in raw:
        if name in _REFUSED_SOURCE_KEYS:
            raise _Invalid(_join(key, name), _REFUSED_SOURCE_KEYS[name])
    _check_keys(raw, SOURCE_KEYS, key)

    def sub(name: str) -> str:
        return _join(key, name)

    if "name" not in raw:
        raise _Invalid(sub("name"), "required")
    name = _label(raw["name"], sub("name"))
    site = _label(raw["site"], sub("site")) if "site" in raw else name
    if "url" not in raw:
        raise _Invalid(sub("url"), "required (file:///PATH or sftp://user@host/PATH)")
    url = _string(raw["url"], sub("url"))
    scheme, folder, host, port, user = _parse_source_url(url, sub("url"), config_dir)

    timezone = "UTC"
    if "timezone" in raw:
        timezone = _string(raw["timezone"], sub("timezone"))
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _Invalid(sub("timezone"), f"unknown time zone {timezone!r}") from None

    cron = _cron(raw["cron"], sub("cron"), timezone) if "cron" in raw else None
    poll: timedelta | None = None if cron is not None else DEFAULT_POLL
    if "poll" in raw:
        poll = _duration(raw["poll"], sub("poll"))
        if poll <= timedelta(0):
            raise _Invalid(sub("poll"), "must be longer than 0s")

    known_hosts = _optional_path(raw, "known_hosts", key, config_dir)
    private_key = _optional_path(raw, "private_key", key, config_dir)
    password_env = _optional_env_name(raw, "password_env", key)
    if scheme == "sftp":
        if known_hosts is None:
            raise _Invalid(
                sub("known_hosts"), "required for sftp sources (no host key is ever auto-added)"
            )
        if private_key is None and password_env is None:
            raise _Invalid(
                sub("private_key"), "required for sftp sources unless password_env is set"
            )

    source = SourceConfig(
        name=name,
        site=site,
        url=url,
        scheme=scheme,
        path=folder,
        folders=_folders(raw.get("folders"), sub("folders"), scheme, folder),
        host=host,
        port=port,
        user=user,
        poll=poll,
        cron=cron,
        timezone=timezone,
        known_hosts=known_hosts,
        private_key=private_key,
        private_key_passphrase_env=_optional_env_name(raw, "private_key_passphrase_env", key),
        password_env=password_env,
        modes=_modes(raw.get("mode", "full"), sub("mode")),
        globs=_globs(raw.get("globs"), sub("globs")),
        relationship_types=_relationship_types(
            raw.get("relationship_types"), sub("relationship_types")
        ),
    )
    changes: dict[str, Any] = {}
    for duration_key in ("min_age", "dependency_wait", "pending_ttl"):
        if duration_key in raw:
            changes[duration_key] = _duration(raw[duration_key], sub(duration_key))
    for flag in ("done_marker", "deactivate_orphan_parents", "update_passwords"):
        if flag in raw:
            changes[flag] = _bool(raw[flag], sub(flag))
    for fraction in ("max_deactivate", "max_update", "max_reject"):
        if fraction in raw:
            changes[fraction] = _fraction(raw[fraction], sub(fraction))
    if "child_field" in raw:
        changes["child_field"] = _enum(ChildField, raw["child_field"], sub("child_field"))
    if "child_column" in raw:
        changes["child_column"] = _label(raw["child_column"], sub("child_column"))
    if "passwords" in raw:
        changes["passwords"] = _enum(PasswordPolicy, raw["passwords"], sub("passwords"))
    if changes.get("update_passwords") and changes.get("passwords") is not PasswordPolicy.HASH:
        # With "drop" no password is kept: the setting would promise what never happens.
        raise _Invalid(
            sub("update_passwords"), 'true needs passwords = "hash" (with "drop" none is kept)'
        )
    changes["limits"] = _limits(raw, key)
    return dataclasses.replace(source, **changes)


# --------------------------------------------------------------------------- pieces


def _join(prefix: str, key: str) -> str:
    shown = key if _BARE_KEY.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{prefix}.{shown}" if prefix else shown


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return f"the number {value!r}"  # "a whole number, not a number" would puzzle
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _wrong_type(value: object, key: str, wanted: str) -> NoReturn:
    raise _Invalid(key, f"must be {wanted}, not {_type_name(value)}")


def _check_keys(table: Mapping[str, Any], known: frozenset[str], prefix: str) -> None:
    for name in table:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _Invalid(_join(prefix, name), f"unknown key{hint}")


def _table(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _wrong_type(value, key, "a table")
    return value


def _string(value: object, key: str) -> str:
    if not isinstance(value, str):
        _wrong_type(value, key, "a string")
    if not value.strip():
        raise _Invalid(key, "must not be empty")
    return value


def _label(value: object, key: str) -> str:
    """Return a name-like string: not empty, no surrounding spaces, no control characters."""
    text = _string(value, key)
    if text != text.strip() or any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise _Invalid(key, f"no leading or trailing spaces or control characters: {text!r}")
    return text


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        _wrong_type(value, key, "true or false")
    return value


def _fraction(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _wrong_type(value, key, "a number from 0 to 1")
    if not 0 <= value <= 1:
        raise _Invalid(key, f"must be a number from 0 to 1, not {value!r}")
    return float(value)


def _positive_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _wrong_type(value, key, "a whole number")
    if value <= 0:
        raise _Invalid(key, f"must be more than 0, not {value!r}")
    return value


def _duration(value: object, key: str) -> timedelta:
    if not isinstance(value, str):
        _wrong_type(value, key, 'a duration string like "10s", "30min" or "14d"')
    try:
        return parse_duration(value)
    except ValueError as error:
        raise _Invalid(key, str(error)) from None


def _enum(enum: type[_E], value: object, key: str) -> _E:
    choices = ", ".join(member.value for member in enum)
    if not isinstance(value, str):
        _wrong_type(value, key, f"one of {choices}")
    for member in enum:
        if member.value.casefold() == value.strip().casefold():
            return member
    raise _Invalid(key, f"must be one of {choices}, not {value!r}")


# crontab(5)'s day-of-week numbers: 0 (and 7) is Sunday. APScheduler 3.x counts from
# Monday (its from_crontab says so), so the field is handed to it as day names.
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(expression: str, timezone: str) -> Any:
    """Return the APScheduler trigger of a 5-field crontab `expression` (minute hour day
    month weekday), read as crontab reads it; ValueError if it is not one.

    Its weekday numbers count from Sunday; and when both the day of the month and the
    weekday are given, a day that matches either runs (`0 2 1,15 * 0`: the 1st, the 15th
    and Sundays), where APScheduler asks both to match.
    """
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, weekday = expression.split()
    days = crontab_weekdays(weekday)

    def trigger(day: str, days: str) -> CronTrigger:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=days, timezone=timezone
        )

    if day == "*" or days == "*":
        return trigger(day, days)
    return OrTrigger([trigger(day, "*"), trigger("*", days)])


def crontab_weekdays(field: str) -> str:
    """Return crontab's day-of-week field (numbers 0-7, 0 and 7 Sunday; names; ranges,
    lists and steps) as a list of day names, or "*"; ValueError if it is not one."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.casefold().split(","):
        span, slash, step_text = part.partition("/")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError(f"step {step_text} in the weekday field")
        if span == "*":
            first, last = 0, 6
        else:
            start, dash, end = span.partition("-")
            first = _weekday(start)
            last = _weekday(end) if dash else (7 if slash else first)
        if first > last:
            raise ValueError(f"weekday range {span} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _weekday(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    raise ValueError(f"{token!r} is not a weekday (0-7, 0 and 7 Sunday, or sun-sat)")


def _cron(value: object, key: str, timezone: str) -> str:
    expression = _string(value, key)
    fields = expression.split()
    if len(fields) != 5:
        raise _Invalid(
            key,
            f"a cron expression has 5 fields (minute hour day month weekday), "
            f"{expression!r} has {len(fields)}",
        )
    try:
        cron_trigger(" ".join(fields), timezone)
    except ValueError as error:
        raise _Invalid(key, f"not a cron expression: {expression!r} ({error})") from None
    return " ".join(fields)


def _local_path(value: str, config_dir: Path) -> str:
    return os.path.normpath(value if os.path.isabs(value) else config_dir / value)


def _optional_path(raw: Mapping[str, Any], name: str, key: str, config_dir: Path) -> Path | None:
    if name not in raw:
        return None
    return Path(_local_path(_string(raw[name], _join(key, name)), config_dir))


def _optional_env_name(raw: Mapping[str, Any], name: str, key: str) -> str | None:
    if name not in raw:
        return None
    value = raw[name]
    if not isinstance(value, str):
        _wrong_type(value, _join(key, name), "the name of an environment variable")
    # Never echo the value: someone may have pasted the secret itself here.
    if not _ENV_NAME.fullmatch(value):
        raise _Invalid(
            _join(key, name),
            "must be the name of an environment variable (letters, digits and _), "
            "not the secret itself",
        )
    return value


def _check_connection_options(query: str, key: str) -> None:
    """Raise _Invalid for a URL parameter libpq does not know (it would fail every command
    as an "unexpected error"); the values are never echoed (a password may be one)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import make_conninfo

    options = {name: "x" for name, _ in parse_qsl(query, keep_blank_values=True)}
    try:
        make_conninfo("", **options)
    except ProgrammingError as error:
        raise _Invalid(key, str(error).splitlines()[0]) from None


def _database_url(value: object, config_dir: Path) -> str:
    key = "database.url"
    # Never echo the URL: it may hold a database password.
    url = _string(value, key).strip()
    match = _DATABASE_URL.fullmatch(url)
    dialect = match.group(1).lower() if match else ""
    if match is None or dialect not in {"sqlite", "postgresql"}:
        raise _Invalid(key, "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE")
    if dialect == "postgresql":
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed [ of an IPv6 host
            raise _Invalid(key, "not a URL: postgresql+psycopg://USER@HOST/DATABASE") from None
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            # Checked here: later it is an "unexpected error" (exit 1) naming no key.
            raise _Invalid(key, "the port must be a number from 1 to 65535") from None
        _check_connection_options(parts.query, key)
        # psycopg 3 is the driver syncd ships with; plain postgresql:// would want psycopg2.
        return url if match.group(2) else "postgresql+psycopg://" + match.group(3)
    rest = match.group(3)
    database, question, query = rest[1:].partition("?")
    if not rest.startswith("/") or database in {"", ":memory:"} or "mode=memory" in query:
        # Each command would open a new, empty database: nothing applied would stay.
        raise _Invalid(key, "an in-memory SQLite database keeps nothing; give a file path")
    if database.startswith("file:") or os.path.isabs(database):
        return url
    prefix = url[: len(url) - len(rest)]
    return prefix + "/" + _local_path(database, config_dir) + question + query


def _parse_source_url(
    url: str, key: str, config_dir: Path
) -> tuple[str, str, str | None, int, str | None]:
    """Return (scheme, folder, host, port, user) of a source URL."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise _Invalid(key, "not a URL (file:///PATH or sftp://user@host/PATH)") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise _Invalid(
                key, "a file URL names a folder on this host: file:///PATH or file:RELATIVE"
            )
        if parts.query or parts.fragment:
            raise _Invalid(key, "a file URL takes no ?query or #fragment")
        folder = unquote(parts.path)
        if not folder:
            raise _Invalid(key, "no folder: use file:///PATH or file:RELATIVE")
        return "file", _local_path(folder, config_dir), None, 22, None
    if scheme == "sftp":
        # Never echo an sftp URL: it may carry a password.
        if parts.password is not None:
            raise _Invalid(key, "never put a password in the URL; use password_env")
        if parts.query or parts.fragment:
            raise _Invalid(key, "an sftp URL takes no ?query or #fragment")
        try:
            port = parts.port or 22
        except ValueError:
            raise _Invalid(key, "bad port (1-65535)") from None
        if not parts.hostname:
            raise _Invalid(key, "no host: use sftp://user@host:22/PATH")
        if not parts.username:
            raise _Invalid(key, "no user: use sftp://user@host:22/PATH")
        folder = unquote(parts.path)
        if not folder:
            raise _Invalid(key, "no folder: use sftp://user@host:22/PATH")
        return "sftp", folder, parts.hostname, port, unquote(parts.username)
    shown = repr(scheme) if scheme else "none"
    raise _Invalid(key, f"unsupported scheme {shown}: use file:///PATH or sftp://user@host:22/PATH")


def _modes(value: object, key: str) -> Mapping[Kind, Mode]:
    if isinstance(value, str):
        mode = _enum(Mode, value, key)
        return MappingProxyType(dict.fromkeys(Kind, mode))
    if not isinstance(value, dict):
        _wrong_type(value, key, 'full, delta or a table like { relationships = "delta" }')
    _check_keys(value, _KIND_KEYS, key)
    modes = dict.fromkeys(Kind, Mode.FULL)
    for kind_name, mode_value in value.items():
        modes[Kind(kind_name)] = _enum(Mode, mode_value, _join(key, kind_name))
    return MappingProxyType(modes)


def _globs(value: object, key: str) -> Mapping[Kind, tuple[str, ...]]:
    if value is None:
        return DEFAULT_GLOBS
    table = _table(value, key)
    _check_keys(table, _KIND_KEYS, key)
    globs = dict(DEFAULT_GLOBS)
    for kind_name, patterns in table.items():
        kind_key = _join(key, kind_name)
        if not isinstance(patterns, list):
            _wrong_type(patterns, kind_key, 'a list of globs like ["*student*"]')
        globs[Kind(kind_name)] = tuple(
            _string(pattern, f"{kind_key}[{index}]") for index, pattern in enumerate(patterns)
        )
    return MappingProxyType(globs)


def _relationship_types(value: object, key: str) -> Mapping[str, RelType]:
    if value is None:
        return MappingProxyType({})
    table = _table(value, key)
    types: dict[str, RelType] = {}
    first_key: dict[str, str] = {}
    for written, type_value in table.items():
        entry_key = _join(key, written)
        folded = written.strip().casefold()
        if not folded:
            raise _Invalid(entry_key, "the value to map must not be empty")
        if folded in types:
            raise _Invalid(
                entry_key, f"same as {first_key[folded]!r} (values are compared ignoring case)"
            )
        types[folded] = _enum(RelType, type_value, entry_key)
        first_key[folded] = written
    return MappingProxyType(types)


def _folders(value: object, key: str, scheme: str, folder: str) -> Folders:
    defaults = default_folders(scheme, folder)
    if value is None:
        return defaults
    table = _table(value, key)
    _check_keys(table, frozenset(FOLDER_NAMES), key)
    chosen: dict[str, PurePath] = {name: getattr(defaults, name) for name in FOLDER_NAMES}
    for name, raw_path in table.items():
        text = _string(raw_path, _join(key, name))
        if scheme == "sftp":
            chosen[name] = PurePosixPath(text)
        else:
            chosen[name] = Path(_local_path(text, Path(folder)))
    # Work folders must be distinct and never the drop folder: it is scanned, they are not.
    seen: dict[str, str] = {}
    for name in FOLDER_NAMES:
        if scheme == "sftp":
            where = posixpath.normpath(posixpath.join(folder, str(chosen[name])))
            drop = posixpath.normpath(folder)
        else:
            where = os.path.normpath(chosen[name])
            drop = os.path.normpath(folder)
        if where == drop:
            raise _Invalid(_join(key, name), "must not be the drop folder itself")
        if where in seen:
            raise _Invalid(_join(key, name), f"same folder as {_join(key, seen[where])}")
        seen[where] = name
    return Folders(**chosen)


def _limits(raw: Mapping[str, Any], key: str) -> Limits:
    defaults = Limits()
    max_file_size = defaults.max_file_size
    if "max_file_size" in raw:
        size_key = _join(key, "max_file_size")
        value = raw["max_file_size"]
        if isinstance(value, bool) or not isinstance(value, int | str):
            _wrong_type(value, size_key, 'a byte count or a size like "2GiB"')
        try:
            max_file_size = parse_size(value)
        except ValueError as error:
            raise _Invalid(size_key, str(error)) from None
        if max_file_size <= 0:
            raise _Invalid(size_key, "must be more than 0 bytes")
    max_field_chars = defaults.max_field_chars
    if "max_field_chars" in raw:
        max_field_chars = _positive_int(raw["max_field_chars"], _join(key, "max_field_chars"))
    max_columns = defaults.max_columns
    if "max_columns" in raw:
        max_columns = _positive_int(raw["max_columns"], _join(key, "max_columns"))
    return Limits(
        max_file_size=max_file_size, max_field_chars=max_field_chars, max_columns=max_columns
    )
