"""A real OpenSSH server for tests: own host key, own user key, internal-sftp, a free port.

Use the `sshd` fixture (import it into a conftest or test module: `from
tests.integration.sshd import sshd  # noqa: F401`). It yields a `Sshd` whose `upload`
folder is the SFTP drop folder: with internal-sftp and no chroot a remote path is the
absolute local path, so tests check remote effects on the local disk directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncd.config import SourceConfig, default_folders, local_source

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
NOT_INSTALLED = "OpenSSH sshd is not installed; ./scripts/test installs openssh-server"
START_TIMEOUT = 10.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nobody listens on right now (never 22)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def keygen(
    path: Path, passphrase: str = "", comment: str = "syncd-test", key_type: str = "ed25519"
) -> Path:
    """Write a key pair (ed25519 unless said) at `path` and `path`.pub; return `path`."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", key_type, "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path


def offered(path: Path) -> str:
    """Return the key beside private key `path` as an operator sees it: its type and the
    SHA256 fingerprint OpenSSH's ssh-keygen prints (`ssh-ed25519 SHA256:…`)."""
    listed = subprocess.run(
        [SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(path) + ".pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return f"{public_key(path).split()[0]} {listed[1]}"


def public_key(path: Path) -> str:
    """Return "TYPE BASE64" of the public key beside private key `path` (or of a .pub)."""
    pub = path if path.suffix == ".pub" else path.with_name(path.name + ".pub")
    kind, blob, *_ = pub.read_text().split()
    return f"{kind} {blob}"


def hash_known_hosts(path: Path) -> Path:
    """Hash the host names of known_hosts `path` in place (ssh-keygen -H); return it."""
    subprocess.run(
        [SSH_KEYGEN, "-H", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    Path(str(path) + ".old").unlink(missing_ok=True)
    return path


def _sshd_version() -> tuple[int, int]:
    result = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _descendants(pid: int) -> list[int]:
    """Return the PIDs of the children of `pid`, their children, ... (from /proc)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        children: list[int] = []
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:  # exited meanwhile
            tasks = []
        for task in tasks:
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{parent}/task/{task}/children").read_text()
                children.extend(int(item) for item in text.split())
        found.extend(children)
        queue.extend(children)
    return found


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


@dataclass
class Sshd:
    """One OpenSSH server on 127.0.0.1:`port`, its keys and its files under `home`."""

    home: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    user: str = field(default_factory=getpass.getuser)
    # The sftp Subsystem line; a test may set e.g. "/bin/sleep 60" (a server that never
    # answers SFTP) and restart().
    sftp_subsystem: str = "internal-sftp"
    # Further sshd_config lines (e.g. "Ciphers aes128-ctr"); restart() to apply.
    extra_config: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    _session_pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.upload.mkdir(exist_ok=True)
        self.host_key = keygen(self.home / "ssh_host_ed25519_key", comment="syncd-test-host")
        self.client_key = keygen(self.home / "id_ed25519", comment="syncd-test-client")
        (self.home / "authorized_keys").write_text(public_key(self.client_key) + "\n")
        self.known_hosts = self.write_known_hosts(self.home / "known_hosts")

    # ----------------------------------------------------------------- files

    @property
    def upload(self) -> Path:
        """The drop folder; its remote path is the same absolute path."""
        return self.home / "upload"

    @property
    def config_file(self) -> Path:
        return self.home / "sshd_config"

    @property
    def log_file(self) -> Path:
        return self.home / "sshd.log"

    @property
    def host_pattern(self) -> str:
        """The known_hosts host field: `[127.0.0.1]:PORT` (port is never 22)."""
        return f"[{self.host}]:{self.port}"

    def known_hosts_line(self, key: Path | None = None) -> str:
        """Return the known_hosts line of this server's host key (or of another key file)."""
        return f"{self.host_pattern} {public_key(key or self.host_key)}\n"

    def write_known_hosts(
        self, path: Path, hashed: bool = False, key: Path | None = None, extra: str = ""
    ) -> Path:
        """Write a known_hosts file for this server (hashed with ssh-keygen -H on request)."""
        path.write_text(extra + self.known_hosts_line(key))
        return hash_known_hosts(path) if hashed else path

    def authorize(self, key: Path) -> None:
        """Also accept the user key `key` (a private key path; its .pub is read)."""
        with (self.home / "authorized_keys").open("a") as handle:
            handle.write(public_key(key) + "\n")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def _write_config(self) -> None:
        lines = [
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.home / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.home / 'authorized_keys'}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"Subsystem sftp {self.sftp_subsystem}",
            f"AllowUsers {self.user}",
            "PermitRootLogin prohibit-password",
            "LogLevel VERBOSE",
            "MaxStartups 100",
        ]
        if _sshd_version() >= (9, 8):
            lines.append("PerSourcePenalties no")  # failed-auth tests must not lock us out
        lines += self.extra_config
        self.config_file.write_text("\n".join(lines) + "\n")

    # ----------------------------------------------------------------- process

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start sshd and wait until the port accepts connections."""
        if self.running:
            return
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self._write_config()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sshd did not listen on {self.port} in {START_TIMEOUT}s:\n{self.log()}")

    def session_pids(self) -> list[int]:
        """Return the PIDs of the per-connection sshd processes (children of the listener)."""
        return _descendants(self.process.pid) if self.running and self.process else []

    def stop(self, sessions: bool = True) -> None:
        """Stop the listener (SIGTERM, then wait); with `sessions`, also kill open sessions.

        OpenSSH keeps established sessions when the listener exits; `sessions=True` makes
        the server really go away for connected clients too.
        """
        process = self.process
        if process is None:
            return
        children = _descendants(process.pid) if process.poll() is None else []
        children += self._session_pids
        self._session_pids = []
        _signal(process.pid, signal.SIGCONT)
        for pid in children:
            _signal(pid, signal.SIGCONT)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if sessions:
            for pid in children:
                _signal(pid, signal.SIGKILL)
        else:
            self._session_pids = children  # killed at teardown
        self.process = None
        self._wait_until_refused()

    def _wait_until_refused(self) -> None:
        """Return once the port refuses connections: a child forked for a connection may
        hold the listening socket for a moment after the listener exited (a test that
        connects then would get a reset, not the refusal of a server that is gone)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except ConnectionRefusedError:
                return
            except OSError:
                pass
            time.sleep(0.02)

    def restart(self) -> None:
        """Stop (sessions too) and start again on the same port with the same keys."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP the listener and all sessions: a server that hangs without closing."""
        if self.process is None:
            return
        for pid in [*_descendants(self.process.pid), self.process.pid]:
            _signal(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is None:
            return
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            _signal(pid, signal.SIGCONT)

    # ----------------------------------------------------------------- syncd config

    def source_config(
        self, name: str = "sftp", path: Path | None = None, **overrides: Any
    ) -> SourceConfig:
        """Return an sftp:// SourceConfig on `path` (default: the upload folder)."""
        folder = str(path or self.upload)
        local = local_source(Path(folder), name=name)
        config = dataclasses.replace(
            local,
            url=f"sftp://{self.user}@{self.host}:{self.port}{folder}",
            scheme="sftp",
            path=folder,
            host=self.host,
            port=self.port,
            user=self.user,
            known_hosts=self.known_hosts,
            private_key=self.client_key,
            folders=default_folders("sftp", folder),
        )
        return dataclasses.replace(config, **overrides) if overrides else config

    def source_toml(self, name: str = "sftp", path: Path | None = None) -> str:
        """Return a `[[sources]]` table for a config.toml, for CLI and daemon tests."""
        folder = str(path or self.upload)
        return (
            "[[sources]]\n"
            f'name = "{name}"\n'
            f'url = "sftp://{self.user}@{self.host}:{self.port}{folder}"\n'
            f'known_hosts = "{self.known_hosts}"\n'
            f'private_key = "{self.client_key}"\n'
        )


def start_sshd(home: Path) -> Sshd:
    """Start a server in `home` (skip the test when OpenSSH is not installed)."""
    if not SSHD.exists():
        pytest.skip(NOT_INSTALLED)
    last: Exception | None = None
    for _ in range(3):  # another process may grab the free port between probe and bind
        server = Sshd(home)
        try:
            server.start()
        except RuntimeError as error:
            last = error
            server.stop()
            shutil.rmtree(home, ignore_errors=True)
            continue
        return server
    raise RuntimeError(f"cannot start sshd: {last}")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A running OpenSSH server with a fresh upload folder, stopped at teardown."""
    server = start_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()
