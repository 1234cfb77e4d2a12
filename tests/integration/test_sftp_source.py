"""SftpSource against a real OpenSSH server: host keys, authentication, failures, big files."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time
from pathlib import Path, PurePosixPath
from typing import Any

import paramiko
import pytest

from syncd.errors import HostKeyRejected, SourceSetupError, SourceUnreachable, UnreachableError
from syncd.sources.sftp import SftpSource, _reason
from tests.integration.sshd import Sshd, keygen, offered, public_key

CONTENT = b"Sync key,First name,Last name\n1,Ada,Lovelace\n"
SECRET = "correct-horse-battery-staple-42"


def upload_tree(server: Sshd) -> list[str]:
    root = server.upload
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def assert_one_line_without_secrets(error: BaseException, *secrets: str) -> str:
    message = str(error)
    assert "\n" not in message
    assert message.startswith('source "sftp": ')
    for secret in secrets:
        assert secret not in message
    assert error.__cause__ is None and error.__suppress_context__
    return message


# --------------------------------------------------------------------------- host keys


def test_connects_with_a_plain_known_hosts_entry(sshd: Sshd) -> None:
    (sshd.upload / "students.csv").write_bytes(CONTENT)

    with SftpSource(sshd.source_config()) as source:
        assert [entry.name for entry in source.list_entries()] == ["students.csv"]

    # Work folders are created on connect (mkdir -p semantics).
    assert upload_tree(sshd) == [
        "archive",
        "failed",
        "held",
        "processing",
        "reports",
        "students.csv",
    ]


def test_unknown_host_key_is_refused_and_nothing_moves(sshd: Sshd, tmp_path: Path) -> None:
    (sshd.upload / "students.csv").write_bytes(CONTENT)
    other = keygen(tmp_path / "other_host_key")
    known_hosts = tmp_path / "known_hosts"
    # A key for another host, and this server's key for port 22 only: neither is [host]:port.
    known_hosts.write_text(
        f"[127.0.0.1]:{sshd.port + 1} {public_key(other)}\n127.0.0.1 {public_key(sshd.host_key)}\n"
    )
    before = known_hosts.read_text()

    with pytest.raises(HostKeyRejected) as caught:
        SftpSource(sshd.source_config(known_hosts=known_hosts), connect_timeout=5)

    # The fingerprint the operator checks with the server's administrator, as OpenSSH shows it.
    assert str(caught.value) == (
        f'source "sftp": host key of 127.0.0.1:{sshd.port} is not in known_hosts '
        f"{known_hosts} (the server offers {offered(sshd.host_key)}); add it once the "
        "server's administrator has confirmed that fingerprint"
    )
    assert caught.value.exit_code == 3
    assert isinstance(caught.value, UnreachableError)
    assert upload_tree(sshd) == ["students.csv"]
    assert known_hosts.read_text() == before  # never auto-added


def test_empty_known_hosts_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")

    with pytest.raises(HostKeyRejected, match="is not in known_hosts"):
        SftpSource(sshd.source_config(known_hosts=known_hosts), connect_timeout=5)

    assert known_hosts.read_text() == ""


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    (sshd.upload / "students.csv").write_bytes(CONTENT)
    other = keygen(tmp_path / "other_host_key")
    known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", key=other)

    with pytest.raises(HostKeyRejected) as caught:
        SftpSource(sshd.source_config(known_hosts=known_hosts), connect_timeout=5)

    assert str(caught.value) == (
        f'source "sftp": host key of 127.0.0.1:{sshd.port} changed (the server now offers '
        f"{offered(sshd.host_key)}); update known_hosts only once the server's "
        "administrator has confirmed that fingerprint"
    )
    assert caught.value.exit_code == 3
    assert upload_tree(sshd) == ["students.csv"]


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_a_server_with_several_host_keys_shows_the_one_known_hosts_holds(
    sshd: Sshd, tmp_path: Path, key_type: str
) -> None:
    # OpenSSH's sftp connects with a known_hosts that lists only one of the server's keys;
    # paramiko alone would ask for ed25519 first and call the host key changed.
    listed = keygen(sshd.home / f"ssh_host_{key_type}_key", key_type=key_type)
    sshd.extra_config = [f"HostKey {listed}"]
    sshd.restart()
    known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", key=listed)

    with SftpSource(sshd.source_config(known_hosts=known_hosts)) as source:
        assert source.list_entries() == []


def test_hashed_known_hosts_entry_is_accepted(sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", hashed=True)
    text = known_hosts.read_text()
    assert text.startswith("|1|") and "127.0.0.1" not in text

    with SftpSource(sshd.source_config(known_hosts=known_hosts)) as source:
        assert source.list_entries() == []


def test_hashed_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_host_key")
    known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", hashed=True, key=other)

    with pytest.raises(HostKeyRejected, match="changed"):
        SftpSource(sshd.source_config(known_hosts=known_hosts), connect_timeout=5)


def test_a_stale_line_before_the_right_one_does_not_hide_it(sshd: Sshd, tmp_path: Path) -> None:
    # As OpenSSH: any line for the host that holds the key accepts it.
    stale = sshd.known_hosts_line(keygen(tmp_path / "old_host_key"))
    known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", extra=stale)

    with SftpSource(sshd.source_config(known_hosts=known_hosts)) as source:
        assert source.list_entries() == []


def test_lines_that_are_not_host_keys_are_skipped(sshd: Sshd, tmp_path: Path) -> None:
    other = public_key(keygen(tmp_path / "ca_key"))
    extra = (
        f"@cert-authority *.example.org {other}\n"
        "broken.example.org ssh-ed25519 AAAA!!not-base64\n"
        "# a comment\n\n"
    )
    known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", extra=extra)

    with SftpSource(sshd.source_config(known_hosts=known_hosts)) as source:
        assert source.list_entries() == []


def test_a_revoked_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    line = sshd.known_hosts_line(None)
    known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", extra=f"@revoked {line}")

    with pytest.raises(HostKeyRejected, match="is marked @revoked in known_hosts"):
        SftpSource(sshd.source_config(known_hosts=known_hosts), connect_timeout=5)


def test_a_wildcard_host_pattern_names_the_server(sshd: Sshd, tmp_path: Path) -> None:
    _, key = sshd.known_hosts_line(None).split(" ", 1)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.*]:{sshd.port} {key}")

    with SftpSource(sshd.source_config(known_hosts=known_hosts)) as source:
        assert source.list_entries() == []


def test_missing_known_hosts_file_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "known_hosts"

    with pytest.raises(
        SourceSetupError, match="does not exist; create it with ssh-keyscan"
    ) as caught:
        SftpSource(sshd.source_config(known_hosts=missing), connect_timeout=5)
    assert caught.value.exit_code == 2  # the fix is on this host, not the server's


# --------------------------------------------------------------------------- authentication


def test_wrong_user_key_is_unreachable_in_one_line(sshd: Sshd, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "id_stranger")
    (sshd.upload / "students.csv").write_bytes(CONTENT)

    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(sshd.source_config(private_key=stranger), connect_timeout=5)

    key_text = stranger.read_text().splitlines()[1]
    message = assert_one_line_without_secrets(caught.value, key_text, public_key(stranger))
    assert f"authentication as {sshd.user} at 127.0.0.1:{sshd.port} failed" in message
    assert caught.value.exit_code == 3
    assert upload_tree(sshd) == ["students.csv"]


def test_encrypted_key_with_passphrase_from_env(
    sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keygen(tmp_path / "id_encrypted", passphrase=SECRET)
    sshd.authorize(key)
    monkeypatch.setenv("SYNCD_TEST_PASSPHRASE", SECRET)
    config = sshd.source_config(private_key=key, private_key_passphrase_env="SYNCD_TEST_PASSPHRASE")

    with SftpSource(config) as source:
        assert source.list_entries() == []

    monkeypatch.setenv("SYNCD_TEST_PASSPHRASE", SECRET + "-wrong")
    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(config, connect_timeout=5)
    message = assert_one_line_without_secrets(caught.value, SECRET)
    assert f"cannot load private_key {key}" in message and "wrong passphrase" in message

    monkeypatch.delenv("SYNCD_TEST_PASSPHRASE")
    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(config, connect_timeout=5)
    assert "SYNCD_TEST_PASSPHRASE" in str(caught.value)


def test_encrypted_key_without_passphrase_env(sshd: Sshd, tmp_path: Path) -> None:
    key = keygen(tmp_path / "id_encrypted", passphrase=SECRET)

    with pytest.raises(SourceSetupError, match="is encrypted; name the variable") as caught:
        SftpSource(sshd.source_config(private_key=key), connect_timeout=5)
    assert caught.value.exit_code == 2


def test_missing_private_key_file(sshd: Sshd, tmp_path: Path) -> None:
    with pytest.raises(SourceSetupError, match="does not exist") as caught:
        SftpSource(sshd.source_config(private_key=tmp_path / "id_none"), connect_timeout=5)
    assert caught.value.exit_code == 2


def test_missing_password_variable_is_named(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCD_TEST_SFTP_PASSWORD", raising=False)
    config = sshd.source_config(private_key=None, password_env="SYNCD_TEST_SFTP_PASSWORD")

    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(config, connect_timeout=5)

    assert str(caught.value) == (
        'source "sftp": environment variable SYNCD_TEST_SFTP_PASSWORD '
        "(named by password_env) is not set"
    )


def test_refused_password_never_appears(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_TEST_SFTP_PASSWORD", SECRET)
    config = sshd.source_config(private_key=None, password_env="SYNCD_TEST_SFTP_PASSWORD")

    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(config, connect_timeout=5)

    message = assert_one_line_without_secrets(caught.value, SECRET)
    assert "failed (the server allows: publickey)" in message


# --------------------------------------------------------------------------- server gone


def test_server_stopped_before_connecting(sshd: Sshd) -> None:
    sshd.stop()
    started = time.monotonic()

    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(sshd.source_config(), connect_timeout=5)

    assert time.monotonic() - started < 5
    assert str(caught.value) == (
        f'source "sftp": cannot connect to 127.0.0.1:{sshd.port}: connection refused'
    )


def test_server_stopped_while_connected(sshd: Sshd) -> None:
    (sshd.upload / "students.csv").write_bytes(CONTENT)
    source = SftpSource(sshd.source_config(), connect_timeout=5, io_timeout=5)
    try:
        sshd.stop()  # sessions too
        started = time.monotonic()
        with pytest.raises(SourceUnreachable) as caught:
            source.list_entries()
        assert time.monotonic() - started < 5
        assert_one_line_without_secrets(caught.value)
        assert "failed" in str(caught.value)
        with pytest.raises(SourceUnreachable):
            source.claim("students.csv")
    finally:
        source.close()
        source.close()
    assert (sshd.upload / "students.csv").exists()

    sshd.start()  # the same port, keys and known_hosts
    with SftpSource(sshd.source_config()) as again:
        assert [entry.name for entry in again.list_entries()] == ["students.csv"]


def test_hanging_server_times_out_on_connect(sshd: Sshd) -> None:
    sshd.freeze()  # accepts TCP (kernel backlog), never sends its banner
    started = time.monotonic()

    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(sshd.source_config(), connect_timeout=1)

    assert time.monotonic() - started < 5
    assert f"cannot connect to 127.0.0.1:{sshd.port}" in str(caught.value)
    # paramiko's own words ("No existing session") tell an operator nothing.
    assert str(caught.value).endswith("the SSH handshake did not complete (no SSH banner?)")


@pytest.mark.parametrize(
    ("paramiko_says", "reason"),
    [
        ("No existing session", "the SSH handshake did not complete (no SSH banner?)"),
        (
            "Error reading SSH protocol banner",
            "the SSH handshake did not complete (no SSH banner?)",
        ),
        (
            "Error reading SSH protocol banner[Errno 104] Connection reset by peer",
            "the SSH handshake did not complete (no SSH banner?): connection reset by peer",
        ),
    ],
)
def test_a_failed_ssh_handshake_reads_the_same_whatever_paramiko_says(
    paramiko_says: str, reason: str
) -> None:
    assert _reason(paramiko.SSHException(paramiko_says)) == reason


def test_hanging_server_times_out_on_listing(sshd: Sshd) -> None:
    source = SftpSource(sshd.source_config(), connect_timeout=5, io_timeout=1)
    try:
        sshd.freeze()
        started = time.monotonic()
        with pytest.raises(SourceUnreachable) as caught:
            source.list_entries()
        assert time.monotonic() - started < 5
        assert "timed out" in str(caught.value)
    finally:
        sshd.thaw()
        source.close()


def test_sftp_subsystem_that_never_answers(sshd: Sshd) -> None:
    sshd.sftp_subsystem = "/bin/sleep 30"
    sshd.restart()
    started = time.monotonic()

    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(sshd.source_config(), connect_timeout=1)

    assert time.monotonic() - started < 5
    assert str(caught.value) == (
        f'source "sftp": cannot open an SFTP session on 127.0.0.1:{sshd.port}: timed out'
    )


def test_server_hanging_after_authentication(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = SftpSource._open_sftp

    def freeze_then_open(self: SftpSource, transport: Any) -> Any:
        sshd.freeze()
        return real_open(self, transport)

    monkeypatch.setattr(SftpSource, "_open_sftp", freeze_then_open)
    started = time.monotonic()
    try:
        with pytest.raises(SourceUnreachable, match="cannot open an SFTP session"):
            SftpSource(sshd.source_config(), connect_timeout=1)
    finally:
        sshd.thaw()
    assert time.monotonic() - started < 5


def test_unresolvable_host(sshd: Sshd) -> None:
    config = sshd.source_config(host="no-such-host.invalid")

    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(config, connect_timeout=5)

    assert "no-such-host.invalid" in str(caught.value)


def test_restart_keeps_the_port_and_host_key(sshd: Sshd) -> None:
    port = sshd.port
    sshd.restart()

    assert sshd.port == port
    with SftpSource(sshd.source_config()) as source:
        assert source.list_processing() == []


# --------------------------------------------------------------------------- data


def test_large_file_is_fetched_intact(sshd: Sshd, tmp_path: Path) -> None:
    content = os.urandom(6 * 1024 * 1024 + 123)
    (sshd.upload / "students.csv").write_bytes(content)
    into = tmp_path / "into"
    into.mkdir()

    with SftpSource(sshd.source_config()) as source:
        claimed = source.claim("students.csv")
        assert claimed is not None
        local = source.fetch(claimed, into)

    assert local == into / "students.csv"
    assert local.stat().st_size == len(content)
    assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(content).digest()


def _cipher(source: SftpSource) -> str:
    return str(source._client.get_transport().remote_cipher)


def test_downloads_use_aes_gcm_where_the_server_offers_it(sshd: Sshd, tmp_path: Path) -> None:
    # paramiko alone prefers AES-CTR with a separate HMAC: two passes over every packet.
    (sshd.upload / "students.csv").write_bytes(CONTENT)
    with SftpSource(sshd.source_config()) as source:
        assert _cipher(source) == "aes128-gcm@openssh.com"
        assert source.fetch_location("students.csv", tmp_path).read_bytes() == CONTENT


def test_the_connection_sends_without_waiting_for_acks(sshd: Sshd) -> None:
    # Nagle's algorithm held each small request behind the server's delayed ACK (40 ms).
    with SftpSource(sshd.source_config()) as source:
        sock = source._client.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_a_server_without_aes_gcm_gets_what_it_offers(sshd: Sshd, tmp_path: Path) -> None:
    sshd.extra_config = ["Ciphers aes256-ctr"]
    sshd.restart()
    (sshd.upload / "students.csv").write_bytes(CONTENT)
    with SftpSource(sshd.source_config()) as source:
        assert _cipher(source) == "aes256-ctr"
        assert source.fetch_location("students.csv", tmp_path).read_bytes() == CONTENT


def test_claim_race_on_the_target_name_never_overwrites(sshd: Sshd) -> None:
    """Another daemon takes the processing name between our stat and our rename."""
    (sshd.upload / "students.csv").write_bytes(CONTENT)
    with SftpSource(sshd.source_config()) as source:
        real_rename = source.sftp.rename
        calls: list[tuple[str, str]] = []

        def racing_rename(old: str, new: str) -> Any:
            if not calls:
                Path(new).write_bytes(b"theirs")
            calls.append((old, new))
            return real_rename(old, new)

        source.sftp.rename = racing_rename
        assert source.claim("students.csv") == "students.1.csv"

    processing = sshd.upload / "processing"
    assert (processing / "students.csv").read_bytes() == b"theirs"
    assert (processing / "students.1.csv").read_bytes() == CONTENT
    assert len(calls) == 2


def test_relative_and_absolute_work_folders(sshd: Sshd, tmp_path: Path) -> None:
    from dataclasses import replace
    from pathlib import PurePosixPath

    config = sshd.source_config()
    elsewhere = tmp_path / "reports-elsewhere"
    folders = replace(
        config.folders,
        processing=PurePosixPath(".work/processing"),
        reports=PurePosixPath(str(elsewhere)),
    )
    (sshd.upload / "students.csv").write_bytes(CONTENT)

    with SftpSource(replace(config, folders=folders)) as source:
        assert source.claim("students.csv") == "students.csv"
        where = source.write_report("students.csv.report.json", b"{}")

    assert (sshd.upload / ".work" / "processing" / "students.csv").read_bytes() == CONTENT
    assert Path(where) == elsewhere / "students.csv.report.json"


def test_the_work_folders_are_created_but_never_the_drop_folder(sshd: Sshd) -> None:
    # A mistyped path, made and polled, would look healthy while the files wait elsewhere.
    drop = sshd.upload / "district-a" / "upload"
    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(sshd.source_config(path=drop))
    assert str(caught.value) == (
        f'source "sftp": drop folder {drop} does not exist on 127.0.0.1:{sshd.port}'
    )
    assert caught.value.exit_code == 3
    assert not (sshd.upload / "district-a").exists()

    drop.mkdir(parents=True)
    with SftpSource(sshd.source_config(path=drop)) as source:
        assert source.list_entries() == []

    assert sorted(path.name for path in drop.iterdir()) == [
        "archive",
        "failed",
        "held",
        "processing",
        "reports",
    ]


def test_a_check_looks_at_the_drop_folder_and_creates_nothing(sshd: Sshd) -> None:
    drop = sshd.upload / "district-a" / "upload"
    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(sshd.source_config(path=drop), check_only=True)
    assert str(caught.value) == (
        f'source "sftp": drop folder {drop} does not exist on 127.0.0.1:{sshd.port}'
    )
    assert caught.value.exit_code == 3
    assert not (sshd.upload / "district-a").exists()
    with SftpSource(sshd.source_config(), check_only=True):
        pass
    assert upload_tree(sshd) == []  # no work folders made either


def test_a_check_names_a_work_folder_the_account_cannot_make(sshd: Sshd) -> None:
    config = sshd.source_config()
    config = dataclasses.replace(
        config, folders=dataclasses.replace(config.folders, archive=PurePosixPath("/proc/x/arch"))
    )
    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(config, check_only=True)
    assert str(caught.value).startswith(
        'source "sftp": /proc/x/arch cannot be made: creating a folder in /proc on '
    )
    assert caught.value.exit_code == 3
    assert upload_tree(sshd) == []


def test_a_drop_folder_that_is_a_file_is_named_so(sshd: Sshd) -> None:
    drop = sshd.upload / "upload.csv"
    drop.write_bytes(CONTENT)
    with pytest.raises(SourceUnreachable) as caught:
        SftpSource(sshd.source_config(path=drop))
    assert str(caught.value) == (
        f'source "sftp": drop folder {drop} on 127.0.0.1:{sshd.port} is not a folder'
    )


def test_claim_recreates_a_deleted_processing_folder(sshd: Sshd) -> None:
    (sshd.upload / "students.csv").write_bytes(CONTENT)
    with SftpSource(sshd.source_config()) as source:
        (sshd.upload / "processing").rmdir()
        assert source.claim("students.csv") == "students.csv"

    assert (sshd.upload / "processing" / "students.csv").read_bytes() == CONTENT


def test_server_rename_never_overwrites(sshd: Sshd) -> None:
    """The claim relies on SSH_FXP_RENAME failing onto an existing name (OpenSSH)."""
    (sshd.upload / "a.csv").write_bytes(b"a")
    (sshd.upload / "b.csv").write_bytes(b"b")
    with SftpSource(sshd.source_config()) as source, pytest.raises(OSError):
        source.sftp.rename(str(sshd.upload / "a.csv"), str(sshd.upload / "b.csv"))

    assert (sshd.upload / "a.csv").read_bytes() == b"a"
    assert (sshd.upload / "b.csv").read_bytes() == b"b"
