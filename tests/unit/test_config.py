"""Configuration loading (SPEC §5 --config lookup, §8 keys): defaults, forms, one-line errors."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

import pytest

from syncd.config import (
    AUDIT_KEYS,
    DATABASE_KEYS,
    DEFAULT_GLOBS,
    FOLDER_NAMES,
    SOURCE_KEYS,
    TOP_LEVEL_KEYS,
    Config,
    cron_trigger,
    crontab_weekdays,
    find_config_path,
    load_config,
    local_source,
    parse_duration,
    parse_size,
)
from syncd.errors import ConfigError, UsageError
from syncd.model import ChildField, Kind, Limits, Mode, PasswordPolicy, RelType

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"

SMALLEST = """\
[database]
url = "sqlite:////var/lib/syncd/syncd.db"

[audit]
path = "/var/log/syncd/audit.jsonl"

[[sources]]
name = "district-a"
site = "district-a"
url  = "file:///srv/sftp/district-a/upload"
poll = "60s"
"""

SFTP_SOURCE = """\
[[sources]]
name = "a"
url = "sftp://syncd@sftp.example.org:2222/upload"
known_hosts = "known_hosts"
private_key = "keys/id_ed25519"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def source_config(tmp_path: Path, extra: str, url: str = "file:///srv/drop") -> Config:
    return load_config(write(tmp_path, f'[[sources]]\nname = "a"\nurl = "{url}"\n{extra}\n'))


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.exit_code == 2
    assert "\n" not in str(error)
    assert str(error).startswith(f"{path}: ")
    return error


def source_error(tmp_path: Path, extra: str, url: str = "file:///srv/drop") -> str:
    path = write(tmp_path, f'[[sources]]\nname = "a"\nurl = "{url}"\n{extra}\n')
    return str(config_error(path)).removeprefix(f"{path}: ")


# ---------------------------------------------------------------- the smallest file


def test_utf8_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[[sources]]\nname = "a"\nurl = "file:///srv/drop"\n')
    assert [source.name for source in load_config(path).sources] == ["a"]


def test_smallest_spec_file_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SMALLEST))

    assert config.path == tmp_path / "config.toml"
    assert config.database_url == "sqlite:////var/lib/syncd/syncd.db"
    assert config.audit_path == "/var/log/syncd/audit.jsonl"
    (source,) = config.sources
    assert source.name == "district-a"
    assert source.site == "district-a"
    assert source.scheme == "file"
    assert source.path == "/srv/sftp/district-a/upload"
    assert (source.host, source.port, source.user) == (None, 22, None)
    assert source.poll == timedelta(seconds=60)
    assert source.cron is None
    assert source.timezone == "UTC"
    assert source.min_age == timedelta(seconds=10)
    assert source.done_marker is False
    assert source.child_field is ChildField.SYNC_KEY
    assert source.child_column is None
    assert all(source.mode_for(kind) is Mode.FULL for kind in Kind)
    assert (source.max_deactivate, source.max_update, source.max_reject) == (0.10, 0.75, 0.5)
    assert source.dependency_wait == timedelta(minutes=30)
    assert source.pending_ttl == timedelta(days=14)
    assert source.deactivate_orphan_parents is True
    assert source.passwords is PasswordPolicy.DROP
    assert source.update_passwords is False
    assert source.known_hosts is None
    assert source.private_key is None
    assert source.private_key_passphrase_env is None
    assert source.password_env is None
    assert source.limits == Limits(2 * 1024**3, 100_000, 1_000)
    assert source.globs == DEFAULT_GLOBS
    assert source.globs[Kind.STUDENTS] == ("*student*", "*pupil*", "*child*", "*learner*")
    assert dict(source.relationship_types) == {}
    assert source.folders.processing == Path("/srv/sftp/district-a/upload/processing")
    assert source.folders.reports == Path("/srv/sftp/district-a/upload/reports")


def test_empty_file_is_valid_with_defaults_next_to_the_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))

    assert config.database_url == f"sqlite:///{tmp_path}/syncd.db"
    assert config.audit_path == str(tmp_path / "audit.jsonl")
    assert config.sources == ()


def test_site_defaults_to_the_source_name(tmp_path: Path) -> None:
    assert source_config(tmp_path, "").sources[0].site == "a"


def test_neither_poll_nor_cron_polls_every_minute_and_cron_alone_does_not_poll(
    tmp_path: Path,
) -> None:
    assert source_config(tmp_path, "").sources[0].poll == timedelta(seconds=60)
    only_cron = source_config(tmp_path, 'cron = "0 2 * * *"').sources[0]
    assert (only_cron.poll, only_cron.cron) == (None, "0 2 * * *")
    both = source_config(tmp_path, 'cron = "0 2 * * *"\npoll = "5min"').sources[0]
    assert (both.poll, both.cron) == (timedelta(minutes=5), "0 2 * * *")


def test_every_source_key_is_read(tmp_path: Path) -> None:
    config = source_config(
        tmp_path,
        """
site = "district"
cron = "30 1 * * 1-5"
timezone = "Europe/Paris"
min_age = "30s"
done_marker = true
child_field = "student_number"
child_column = "ChildID"
mode = "delta"
max_deactivate = 0
max_update = 1
max_reject = 0.25
dependency_wait = "1h"
pending_ttl = "7d"
deactivate_orphan_parents = false
passwords = "hash"
update_passwords = true
known_hosts = "ssh/known_hosts"
private_key = "/etc/syncd/id"
private_key_passphrase_env = "KEY_PASS"
password_env = "SFTP_PASS"
max_file_size = "100MB"
max_field_chars = 5000
max_columns = 50
[sources.globs]
students = ["*kids*"]
[sources.relationship_types]
Mother = "parent"
"Step Father" = "GUARDIAN"
[sources.folders]
processing = "work"
archive = "/var/archive"
""",
    )
    (source,) = config.sources
    assert source.site == "district"
    assert source.cron == "30 1 * * 1-5"
    assert source.poll is None
    assert source.timezone == "Europe/Paris"
    assert source.min_age == timedelta(seconds=30)
    assert source.done_marker is True
    assert source.child_field is ChildField.STUDENT_NUMBER
    assert source.child_column == "ChildID"
    assert all(source.mode_for(kind) is Mode.DELTA for kind in Kind)
    assert (source.max_deactivate, source.max_update, source.max_reject) == (0.0, 1.0, 0.25)
    assert isinstance(source.max_update, float)
    assert source.dependency_wait == timedelta(hours=1)
    assert source.pending_ttl == timedelta(days=7)
    assert source.deactivate_orphan_parents is False
    assert source.passwords is PasswordPolicy.HASH
    assert source.update_passwords is True
    assert source.known_hosts == tmp_path / "ssh" / "known_hosts"
    assert source.private_key == Path("/etc/syncd/id")
    assert source.private_key_passphrase_env == "KEY_PASS"
    assert source.password_env == "SFTP_PASS"
    assert source.limits == Limits(100_000_000, 5000, 50)
    assert source.globs[Kind.STUDENTS] == ("*kids*",)
    assert source.globs[Kind.PARENTS] == DEFAULT_GLOBS[Kind.PARENTS]
    assert dict(source.relationship_types) == {
        "mother": RelType.PARENT,
        "step father": RelType.GUARDIAN,
    }
    assert source.folders.processing == Path("/srv/drop/work")
    assert source.folders.archive == Path("/var/archive")
    assert source.folders.held == Path("/srv/drop/held")


# ---------------------------------------------------------------- durations and sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", timedelta(0)),
        ("10s", timedelta(seconds=10)),
        ("30min", timedelta(minutes=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("14d", timedelta(days=14)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30min 15s", timedelta(hours=1, minutes=30, seconds=15)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        ("10 seconds", timedelta(seconds=10)),
        ("2 Days", timedelta(days=2)),
        (" 10S ", timedelta(seconds=10)),
    ],
)
def test_duration_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "10", "s", "10 parsecs", "-10s", "10s junk", "ten s", "1mo", "1e3s"]
)
def test_duration_junk_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2147483648, 2 * 1024**3),
        ("2GiB", 2 * 1024**3),
        ("100MB", 100_000_000),
        ("512KiB", 512 * 1024),
        ("512 kib", 512 * 1024),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("1000", 1000),
        ("10B", 10),
    ],
)
def test_size_forms(value: int | str, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "GiB", "2 parsecs", "2G", "-1KB", -5, "1,000"])
def test_size_junk_is_a_value_error(value: int | str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(value)


def test_durations_in_the_file_are_parsed(tmp_path: Path) -> None:
    source = source_config(
        tmp_path, 'min_age = "0s"\ndependency_wait = "1h30m"\npending_ttl = "2d"'
    ).sources[0]
    assert source.min_age == timedelta(0)
    assert source.dependency_wait == timedelta(minutes=90)
    assert source.pending_ttl == timedelta(days=2)


def test_max_file_size_takes_bytes_or_a_size_string(tmp_path: Path) -> None:
    as_int = source_config(tmp_path, "max_file_size = 2147483648").sources[0]
    as_text = source_config(tmp_path, 'max_file_size = "2GiB"').sources[0]
    assert as_int.limits.max_file_size == as_text.limits.max_file_size == 2 * 1024**3


# ---------------------------------------------------------------- mode


def test_mode_string_applies_to_every_kind(tmp_path: Path) -> None:
    source = source_config(tmp_path, 'mode = "delta"').sources[0]
    assert {kind: source.mode_for(kind) for kind in Kind} == dict.fromkeys(Kind, Mode.DELTA)


def test_mode_table_sets_kinds_and_missing_kinds_are_full(tmp_path: Path) -> None:
    source = source_config(tmp_path, 'mode = { relationships = "delta" }').sources[0]
    assert source.mode_for(Kind.STUDENTS) is Mode.FULL
    assert source.mode_for(Kind.PARENTS) is Mode.FULL
    assert source.mode_for(Kind.RELATIONSHIPS) is Mode.DELTA


def test_mode_table_with_every_kind(tmp_path: Path) -> None:
    source = source_config(
        tmp_path, 'mode = { students = "full", parents = "full", relationships = "delta" }'
    ).sources[0]
    assert dict(source.modes) == {
        Kind.STUDENTS: Mode.FULL,
        Kind.PARENTS: Mode.FULL,
        Kind.RELATIONSHIPS: Mode.DELTA,
    }


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour = 1\n", "colour"),
        ('[database]\nurl = "sqlite:///x.db"\npool = 5\n', "database.pool"),
        ('[audit]\nfile = "x"\n', "audit.file"),
        ('[[sources]]\nname = "a"\nurl = "file:///d"\ncolour = "red"\n', "sources[0].colour"),
        (
            '[[sources]]\nname = "a"\nurl = "file:///d"\n[sources.folders]\ntmp = "t"\n',
            "sources[0].folders.tmp",
        ),
        (
            '[[sources]]\nname = "a"\nurl = "file:///d"\n[sources.globs]\nstaff = ["*"]\n',
            "sources[0].globs.staff",
        ),
        (
            '[[sources]]\nname = "a"\nurl = "file:///d"\nmode = { teachers = "full" }\n',
            "sources[0].mode.teachers",
        ),
        (
            '[[sources]]\nname = "a"\nurl = "file:///d"\n'
            '[[sources]]\nname = "b"\nurl = "file:///e"\n"odd key" = 1\n',
            'sources[1]."odd key"',
        ),
    ],
)
def test_unknown_key_is_an_error_naming_its_path(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    assert str(config_error(path)) == f"{path}: {key}: unknown key"


def test_unknown_key_close_to_a_known_one_suggests_it(tmp_path: Path) -> None:
    message = source_error(tmp_path, 'min_ages = "1s"')
    assert message == "sources[0].min_ages: unknown key (did you mean min_age?)"


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ('min_age = "10 parsecs"', "min_age", "not a duration: '10 parsecs'"),
        ("min_age = 10", "min_age", "must be a duration string"),
        ('poll = "0s"', "poll", "must be longer than 0s"),
        ('pending_ttl = "-1d"', "pending_ttl", "not a duration"),
        ('pending_ttl = "1M"', "pending_ttl", '"M" could be months: write "min"'),
        ("max_deactivate = -0.1", "max_deactivate", "from 0 to 1, not -0.1"),
        ("max_update = 1.5", "max_update", "from 0 to 1, not 1.5"),
        ("max_reject = 2", "max_reject", "from 0 to 1, not 2"),
        ("max_reject = true", "max_reject", "must be a number from 0 to 1, not a boolean"),
        ('max_reject = "0.5"', "max_reject", "not a string"),
        ('child_field = "phone"', "child_field", "must be one of sync_key, username"),
        ('passwords = "clear"', "passwords", "must be one of drop, hash, not 'clear'"),
        ('mode = "partial"', "mode", "must be one of full, delta"),
        ('mode = { parents = "sometimes" }', "mode.parents", "must be one of full, delta"),
        ("done_marker = 1", "done_marker", "must be true or false, not an integer"),
        ("update_passwords = true", "update_passwords", 'true needs passwords = "hash"'),
        ("max_columns = 1.5", "max_columns", "must be a whole number, not the number 1.5"),
        ('deactivate_orphan_parents = "yes"', "deactivate_orphan_parents", "true or false"),
        ("max_columns = 0", "max_columns", "must be more than 0"),
        ("max_field_chars = -3", "max_field_chars", "must be more than 0"),
        ('max_field_chars = "100"', "max_field_chars", "must be a whole number"),
        ('max_file_size = "2 parsecs"', "max_file_size", "not a size: '2 parsecs'"),
        ("max_file_size = 0", "max_file_size", "must be more than 0 bytes"),
        ('cron = "0 2 * *"', "cron", "5 fields"),
        ('cron = "61 2 * * *"', "cron", "not a cron expression: '61 2 * * *'"),
        ('cron = "0 2 * * 8"', "cron", "'8' is not a weekday (0-7, 0 and 7 Sunday, or sun-sat)"),
        ('cron = "0 2 * * 5-1"', "cron", "weekday range 5-1 runs backwards"),
        ('timezone = "Mars/Olympus"', "timezone", "unknown time zone 'Mars/Olympus'"),
        ('site = " padded "', "site", "no leading or trailing spaces"),
        ('child_column = ""', "child_column", "must not be empty"),
        ('password_env = "hunter2!"', "password_env", "name of an environment variable"),
        ("known_hosts = 3", "known_hosts", "must be a string"),
        ('globs = { students = "*kid*" }', "globs.students", "must be a list"),
        ('globs = { students = ["*kid*", ""] }', "globs.students[1]", "must not be empty"),
        ('folders = "work"', "folders", "must be a table"),
        ('folders = { held = "." }', "folders.held", "must not be the drop folder itself"),
        (
            'folders = { held = "processing" }',
            "folders.held",
            "same folder as sources[0].folders.processing",
        ),
        (
            '[sources.relationship_types]\nMother = "Mum"',
            "relationship_types.Mother",
            "must be one of Parent, Aide, Guardian, Relative, Other, not 'Mum'",
        ),
        (
            '[sources.relationship_types]\nMother = "Parent"\nMOTHER = "Guardian"',
            "relationship_types.MOTHER",
            "same as 'Mother'",
        ),
    ],
)
def test_bad_value_is_one_line_naming_the_key(
    tmp_path: Path, extra: str, key: str, problem: str
) -> None:
    message = source_error(tmp_path, extra)
    assert message.startswith(f"sources[0].{key}: ")
    assert problem in message


def test_bad_value_in_a_later_source_names_its_index(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[sources]]\nname = "a"\nurl = "file:///d"\n'
        '[[sources]]\nname = "b"\nurl = "file:///e"\nmin_age = "soon"\n',
    )
    assert str(config_error(path)) == f"{path}: sources[1].min_age: not a duration: 'soon'"


def test_thresholds_accept_integer_zero_and_one(tmp_path: Path) -> None:
    source = source_config(tmp_path, "max_deactivate = 0\nmax_update = 1").sources[0]
    assert (source.max_deactivate, source.max_update) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://user@host/upload", "unsupported scheme 'ftp'"),
        ("/srv/drop", "unsupported scheme none"),
        ("https://example.org/x", "unsupported scheme 'https'"),
        ("file://otherhost/srv", "a file URL names a folder on this host"),
        ("file:", "no folder"),
        ("sftp://host/upload", "no user"),
        ("sftp://user@host", "no folder"),
        ("sftp://user@host:99999/upload", "bad port"),
    ],
)
def test_bad_url_names_sources_url(tmp_path: Path, url: str, problem: str) -> None:
    message = source_error(tmp_path, 'known_hosts = "kh"\nprivate_key = "k"', url=url)
    assert message.startswith("sources[0].url: ")
    assert problem in message


def test_url_password_is_refused_and_never_echoed(tmp_path: Path) -> None:
    message = source_error(tmp_path, 'known_hosts = "kh"', url="sftp://user:s3cret@host/upload")
    assert message == "sources[0].url: never put a password in the URL; use password_env"
    assert "s3cret" not in message


def test_sftp_without_known_hosts_is_refused(tmp_path: Path) -> None:
    message = source_error(tmp_path, 'private_key = "k"', url="sftp://u@h/upload")
    assert message == (
        "sources[0].known_hosts: required for sftp sources (no host key is ever auto-added)"
    )


def test_sftp_without_key_or_password_env_is_refused(tmp_path: Path) -> None:
    message = source_error(tmp_path, 'known_hosts = "kh"', url="sftp://u@h/upload")
    assert message.startswith("sources[0].private_key: required for sftp sources")


def test_password_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    message = source_error(tmp_path, 'password = "hunter2"')
    assert message == "sources[0].password: never put a password in the file; use password_env"
    assert "hunter2" not in message


def test_env_name_that_looks_like_a_secret_is_not_echoed(tmp_path: Path) -> None:
    message = source_error(tmp_path, 'private_key_passphrase_env = "c0rrect horse"')
    assert message.startswith("sources[0].private_key_passphrase_env: ")
    assert "horse" not in message


def test_database_url_problems_never_echo_the_url(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "mysql://root:s3cret@db/x"\n')
    message = str(config_error(path))
    assert message.startswith(f"{path}: database.url: use sqlite:///PATH or postgresql")
    assert "s3cret" not in message


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'[database]\nurl = "{url}"\n')
    assert str(config_error(path)) == (
        f"{path}: database.url: an in-memory SQLite database keeps nothing; give a file path"
    )


def test_a_malformed_postgresql_url_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "postgresql+psycopg://u:pw@[bad/db"\n')
    message = str(config_error(path))
    assert message.startswith(f"{path}: database.url: not a URL")
    assert "pw" not in message.replace(str(path), "")


def test_duplicate_source_names_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[sources]]\nname = "a"\nurl = "file:///d"\n[[sources]]\nname = "a"\nurl = "file:///e"\n',
    )
    assert str(config_error(path)) == (
        f"{path}: sources[1].name: duplicate source name 'a' (also sources[0])"
    )


def test_two_sources_on_one_folder_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[sources]]\nname = "a"\nurl = "file:///d"\n[[sources]]\nname = "b"\nurl = "file:///d/"\n',
    )
    assert str(config_error(path)).startswith(f"{path}: sources[1].url: same folder as sources[0]")


def _sftp_sources(*urls_and_extra: tuple[str, str]) -> str:
    return "".join(
        f'[[sources]]\nname = "s{n}"\nurl = "{url}"\nknown_hosts = "/k"\n'
        f'password_env = "PW"\n{extra}'
        for n, (url, extra) in enumerate(urls_and_extra)
    )


def test_several_districts_on_one_sftp_server_are_sources_of_their_own(tmp_path: Path) -> None:
    # One account per district, each jailed to its /upload, or folders side by side: the
    # default work folders are each source's own (processing/ under its drop folder).
    text = _sftp_sources(
        ("sftp://district-a@sftp.example.org:22/upload", ""),
        ("sftp://district-b@sftp.example.org:22/upload", ""),
        ("sftp://district-a@sftp.example.org:22/other", ""),
    )
    config = load_config(write(tmp_path, text))
    assert [source.name for source in config.sources] == ["s0", "s1", "s2"]


@pytest.mark.parametrize(
    ("second", "key"),
    [
        (("sftp://district-a@sftp.example.org:22/upload/", ""), "url"),
        (
            (
                "sftp://district-a@sftp.example.org:22/other",
                'folders = { processing = "../upload/processing" }\n',
            ),
            "folders.processing",
        ),
    ],
)
def test_one_sftp_folder_named_by_two_sources_is_refused(
    tmp_path: Path, second: tuple[str, str], key: str
) -> None:
    text = _sftp_sources(("sftp://district-a@sftp.example.org:22/upload", ""), second)
    path = write(tmp_path, text)
    assert str(config_error(path)).startswith(
        f"{path}: sources[1].{key}: same folder as sources[0]"
    )


def test_empty_source_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[[sources]]\nname = " "\nurl = "file:///d"\n')
    assert str(config_error(path)) == f"{path}: sources[0].name: must not be empty"


def test_missing_name_and_url_are_required(tmp_path: Path) -> None:
    path = write(tmp_path, '[[sources]]\nurl = "file:///d"\n')
    assert str(config_error(path)) == f"{path}: sources[0].name: required"
    path = write(tmp_path, '[[sources]]\nname = "a"\n')
    assert str(config_error(path)).startswith(f"{path}: sources[0].url: required")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('database = "sqlite:///x"\n', "database: must be a table, not a string"),
        ("[[database]]\n", "database: must be a table, not a list"),
        ('sources = "a"\n', "sources: must be a list of [[sources]] tables"),
        ("sources = [1]\n", "sources[0]: must be a table, not an integer"),
        ("[audit]\npath = 5\n", "audit.path: must be a string, not an integer"),
    ],
)
def test_wrong_table_shapes(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    assert str(config_error(path)) == f"{path}: {message}"


# ---------------------------------------------------------------- file problems


def test_toml_syntax_error_is_one_line_with_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///x.db"\n\n[[sources]\nname = "a"\n')
    message = str(config_error(path))
    assert message.startswith(f"{path}: not valid TOML: ")
    assert re.search(r"line 4\b", message)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert str(config_error(path)) == f"{path}: no such configuration file"


def test_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[audit]\npath = "\xff"\n')
    assert str(config_error(path)) == f"{path}: not UTF-8 text"


# ---------------------------------------------------------------- resolved paths


def test_relative_sqlite_path_is_resolved_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    path = write(config_dir, '[database]\nurl = "sqlite:///data/x.db"\n')
    assert load_config(path).database_url == f"sqlite:///{config_dir}/data/x.db"
    write(config_dir, '[database]\nurl = "sqlite:///syncd.db"\n')
    assert load_config(path).database_url == f"sqlite:///{config_dir}/syncd.db"


def test_relative_config_path_resolves_against_its_own_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc", '[database]\nurl = "sqlite:///syncd.db"\n[audit]\npath = "a.jsonl"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/config.toml"))
    assert config.path == tmp_path / "etc" / "config.toml"
    assert config.database_url == f"sqlite:///{tmp_path}/etc/syncd.db"
    assert config.audit_path == str(tmp_path / "etc" / "a.jsonl")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/syncd/syncd.db",
        "postgresql+psycopg://syncd@db.example.org/syncd",
        "postgresql+psycopg://syncd@db.example.org:5433/syncd?sslmode=require",
    ],
)
def test_absolute_sqlite_and_postgresql_urls_are_unchanged(tmp_path: Path, url: str) -> None:
    assert load_config(write(tmp_path, f'[database]\nurl = "{url}"\n')).database_url == url


def test_plain_postgresql_url_uses_psycopg3(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[database]\nurl = "postgresql://u@h/db"\n'))
    assert config.database_url == "postgresql+psycopg://u@h/db"


def test_relative_audit_path_is_resolved_and_dash_means_stdout(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[audit]\npath = "logs/audit.jsonl"\n'))
    assert config.audit_path == str(tmp_path / "logs" / "audit.jsonl")
    assert load_config(write(tmp_path, '[audit]\npath = "-"\n')).audit_path == "-"


@pytest.mark.parametrize("url", ["file:drop", "file:./drop"])
def test_relative_file_url_is_resolved_against_the_config_dir(tmp_path: Path, url: str) -> None:
    source = source_config(tmp_path, "", url=url).sources[0]
    assert source.scheme == "file"
    assert source.path == str(tmp_path / "drop")
    assert source.folders.processing == tmp_path / "drop" / "processing"


def test_file_url_forms(tmp_path: Path) -> None:
    assert source_config(tmp_path, "", url="file:///srv/a%20b").sources[0].path == "/srv/a b"
    assert source_config(tmp_path, "", url="file://localhost/srv/x").sources[0].path == "/srv/x"
    assert source_config(tmp_path, "", url="file:/srv/y").sources[0].path == "/srv/y"


def test_sftp_source_keeps_remote_folders_relative(tmp_path: Path) -> None:
    source = load_config(write(tmp_path, SFTP_SOURCE + '[sources.folders]\nheld = "/hold"\n'))
    (sftp,) = source.sources
    assert (sftp.scheme, sftp.user, sftp.host, sftp.port) == (
        "sftp",
        "syncd",
        "sftp.example.org",
        2222,
    )
    assert sftp.path == "/upload"
    assert sftp.is_sftp
    assert sftp.known_hosts == tmp_path / "known_hosts"
    assert sftp.private_key == tmp_path / "keys" / "id_ed25519"
    assert sftp.folders.processing == PurePosixPath("processing")
    assert not isinstance(sftp.folders.processing, Path)
    assert sftp.folders.held == PurePosixPath("/hold")


def test_sftp_port_defaults_to_22_and_password_env_may_replace_the_key(tmp_path: Path) -> None:
    source = source_config(
        tmp_path, 'known_hosts = "kh"\npassword_env = "SFTP_PASSWORD"', url="sftp://u@h/in"
    ).sources[0]
    assert (source.port, source.password_env, source.private_key) == (22, "SFTP_PASSWORD", None)


# ---------------------------------------------------------------- source() and site()


def two_sources(tmp_path: Path) -> Config:
    return load_config(
        write(
            tmp_path,
            '[[sources]]\nname = "a"\nsite = "s"\nurl = "file:///a"\n'
            '[[sources]]\nname = "b"\nsite = "s"\nurl = "file:///b"\n'
            '[[sources]]\nname = "c"\nsite = "t"\nurl = "file:///c"\n',
        )
    )


def test_source_and_site_may_be_left_out_with_one_source(tmp_path: Path) -> None:
    config = source_config(tmp_path, 'site = "s"')
    assert config.source(None).name == "a"
    assert config.site(None) == "s"
    assert config.source("a").name == "a"
    assert config.site("s") == "s"


def test_source_left_out_with_several_is_a_usage_error(tmp_path: Path) -> None:
    config = two_sources(tmp_path)
    with pytest.raises(UsageError, match="several sources: pass --source NAME") as caught:
        config.source(None)
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError, match="several sites: pass --site SITE"):
        config.site(None)


def test_unknown_source_or_site_lists_the_known_ones(tmp_path: Path) -> None:
    config = two_sources(tmp_path)
    assert config.source("b").name == "b"
    assert config.sites == ("s", "t")
    with pytest.raises(UsageError, match="known sources: a, b, c"):
        config.source("z")
    with pytest.raises(UsageError, match="known sites: s, t"):
        config.site("z")


def test_config_without_sources_uses_the_default_site(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[database]\nurl = "sqlite:///x.db"\n'))
    assert config.site(None) == "default"
    assert config.site("other") == "other"
    with pytest.raises(UsageError, match="no sources configured"):
        config.source(None)
    with pytest.raises(UsageError, match="no sources configured"):
        config.source("a")


def test_local_source_builds_a_file_source_with_defaults(tmp_path: Path) -> None:
    source = local_source(tmp_path / "drop", min_age=timedelta(0))
    assert (source.name, source.site, source.scheme) == ("local", "local", "file")
    assert source.path == str(tmp_path / "drop")
    assert source.url == (tmp_path / "drop").as_uri()
    assert source.min_age == timedelta(0)
    assert source.folders.failed == tmp_path / "drop" / "failed"


# ---------------------------------------------------------------- find_config_path


@pytest.fixture
def no_system_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the /etc candidate at a temporary path, so the host's own /etc never counts."""
    system = tmp_path / "etc-syncd" / "config.toml"
    monkeypatch.setattr("syncd.config.SYSTEM_CONFIG", system)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    return system


def test_find_config_prefers_explicit_then_env_then_cwd_then_etc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_config: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    explicit = write(tmp_path, "", "explicit.toml")
    from_env = write(tmp_path, "", "env.toml")
    local = write(work, "")
    no_system_config.parent.mkdir()
    write(no_system_config.parent, "")

    monkeypatch.setenv("SYNCD_CONFIG", str(from_env))
    assert find_config_path(str(explicit)) == explicit
    assert find_config_path(None) == from_env
    monkeypatch.delenv("SYNCD_CONFIG")
    assert find_config_path(None) == Path("config.toml")
    assert find_config_path(None).resolve() == local
    local.unlink()
    assert find_config_path(None) == no_system_config


def test_find_config_without_any_file_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_config: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        find_config_path(None)
    assert str(caught.value) == ("no configuration file: pass --config PATH or set SYNCD_CONFIG")
    assert caught.value.exit_code == 2


def test_find_config_never_falls_back_from_a_missing_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_config: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "")
    with pytest.raises(ConfigError, match="given by --config"):
        find_config_path(str(tmp_path / "missing.toml"))
    monkeypatch.setenv("SYNCD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="given by SYNCD_CONFIG"):
        find_config_path(None)


# ---------------------------------------------------------------- config.example.toml


def uncommented_example() -> str:
    """Return the example with every "#key = value" style line (no space after #) enabled."""
    return re.sub(r"(?m)^#(?=[^\s#])", "", EXAMPLE.read_text(encoding="utf-8"))


def test_example_config_loads_as_shipped(tmp_path: Path) -> None:
    copy = write(tmp_path, EXAMPLE.read_text(encoding="utf-8"))
    config = load_config(copy)
    assert config.database_url == f"sqlite:///{tmp_path}/syncd.db"
    assert config.audit_path == str(tmp_path / "audit.jsonl")
    (source,) = config.sources
    assert source.name == "local"
    assert source.scheme == "file"
    assert source.path == str(tmp_path / "drop")
    assert source.poll == timedelta(seconds=60)
    assert source.min_age == timedelta(seconds=10)  # the default: copied to production as is


def test_example_config_with_every_optional_line_enabled_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, uncommented_example()))
    local, sftp = config.sources
    assert local.cron == "0 2 * * *"
    assert dict(local.relationship_types)["step parent"] is RelType.GUARDIAN
    assert sftp.scheme == "sftp"
    assert sftp.timezone == "America/Chicago"


def test_example_config_documents_every_key(tmp_path: Path) -> None:
    document = tomllib.loads(uncommented_example())
    assert set(document) == TOP_LEVEL_KEYS
    assert set(document["database"]) == DATABASE_KEYS
    assert set(document["audit"]) == AUDIT_KEYS
    local = document["sources"][0]
    assert set(local) == SOURCE_KEYS
    assert set(local["folders"]) == set(FOLDER_NAMES)
    assert set(local["globs"]) == {kind.value for kind in Kind}
    example = EXAMPLE.read_text(encoding="utf-8")
    for key in SOURCE_KEYS:
        assert re.search(rf"\b{key}\b", example), key


def test_metrics_listen_is_parsed_and_checked(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[metrics]\nlisten = ":9464"\n'))
    assert config.metrics_listen == ("127.0.0.1", 9464)
    with pytest.raises(ConfigError, match=r"metrics\.listen: not HOST:PORT"):
        load_config(write(tmp_path, '[metrics]\nlisten = "localhost"\n'))


def test_two_sources_sharing_a_processing_folder_are_refused(tmp_path: Path) -> None:
    # Each pass takes up whatever is in its processing folder as its own crash's leftovers.
    path = write(
        tmp_path,
        '[[sources]]\nname = "a"\nurl = "file:///d"\nfolders = { processing = "/work/p" }\n'
        '[[sources]]\nname = "b"\nurl = "file:///e"\nfolders = { processing = "/work/p" }\n',
    )
    assert str(config_error(path)) == (
        f"{path}: sources[1].folders.processing: same folder as sources[0].folders.processing "
        "('a'): each source needs its own"
    )


@pytest.mark.parametrize(
    ("weekday", "days"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("0,6", "sun,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1-7/3", "sun,mon,thu"),
        ("5/1", "sun,fri,sat"),
        ("SUN", "sun"),
        ("*", "*"),
    ],
)
def test_cron_weekdays_are_crontab_s_zero_and_seven_sunday(weekday: str, days: str) -> None:
    # APScheduler 3.x counts weekday numbers from Monday; an operator writes crontab's.
    assert crontab_weekdays(weekday) == days


def test_a_cron_schedule_fires_on_crontab_s_days(tmp_path: Path) -> None:
    saturday = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    for expression, fires in (
        ("0 2 * * 0", datetime(2026, 12, 6, 2, 0, tzinfo=UTC)),  # Sunday
        ("0 2 * * 1-5", datetime(2026, 12, 7, 2, 0, tzinfo=UTC)),  # Monday night
        ("0 2 * * 6", datetime(2026, 12, 12, 2, 0, tzinfo=UTC)),  # next Saturday
        # Both a day of the month and a weekday: either runs, as in crontab.
        ("0 2 9 * 0", datetime(2026, 12, 6, 2, 0, tzinfo=UTC)),  # Sunday, before the 9th
        ("0 2 7 * 3", datetime(2026, 12, 7, 2, 0, tzinfo=UTC)),  # the 7th, before Wednesday
    ):
        source = source_config(tmp_path, f'cron = "{expression}"').sources[0]
        assert source.cron is not None
        trigger = cron_trigger(source.cron, source.timezone)
        assert trigger.get_next_fire_time(None, saturday) == fires, expression
