"""A drop folder in an SFTP account (sftp:// sources), over paramiko (SPEC §3.1, §3.2).

Host keys are checked against the source's own known_hosts file and nothing else: an unknown
or changed key refuses the connection (HostKeyRejected), a key is never added. Every network
or server failure becomes SourceUnreachable with one line that names the source; messages
never carry a password, a passphrase or key material.

Claims and moves use the plain SFTP rename (SSH_FXP_RENAME), which on OpenSSH fails when the
target exists; the `posix-rename@openssh.com` extension would overwrite and is never used.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import logging
import os
import posixpath
import re
import secrets
import socket
import stat
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import paramiko

from syncd.config import FOLDER_NAMES, SourceConfig
from syncd.errors import (
    FileUnreadable,
    HostKeyRejected,
    SecretMissing,
    SourceSetupError,
    SourceUnreachable,
)
from syncd.sources.base import (
    Entry,
    candidate_names,
    is_candidate_name,
    is_text_name,
    temp_name,
    text_name,
)
from syncd.sources.known_hosts import KnownHosts

__all__ = ["KEEPALIVE_SECONDS", "PREFETCH_REQUESTS", "SftpSource"]

KEEPALIVE_SECONDS = 15
# Bounded read-ahead for downloads: unbounded prefetch stalls or exhausts memory on large
# files with some servers (paramiko#2453, #1788). paramiko spends its time per packet, not
# per byte, so downloads ask for big reads where the server takes them: OpenSSH's
# sftp-server answers reads of up to 255 KiB (SFTP_MAX_READ_LENGTH), others get paramiko's
# 32 KiB. Measured on loopback OpenSSH 9.2 with the 177 MB parents file of the benchmark
# (medians of 5, alternating): 32 KiB × 1024 in flight 75-90 MB/s; 128 KiB × 128 100-116;
# 255 KiB × 128 with a 4 MiB window 107-132; OpenSSH's own sftp 190-206. 128 × 255 KiB
# keeps at most 32 MiB in flight.
PREFETCH_REQUESTS = 128
OPENSSH_READ_SIZE = 255 * 1024
CHANNEL_WINDOW = 4 * 1024 * 1024
CHANNEL_MAX_PACKET = 256 * 1024
# AES-GCM first (paramiko prefers AES-CTR with a separate HMAC): one pass over each packet
# in OpenSSL instead of two; the 177 MB benchmark file from loopback OpenSSH 9.2 came at
# 157 MB/s against 144 (medians of 5, alternating). Servers without it get the next cipher.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")

# paramiko's transport thread logs its own tracebacks at ERROR; with no logging configured
# Python would print them on stderr. Failures reach the caller as one-line SyncdErrors.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def _first(preferred: Collection[str], offered: Sequence[str]) -> tuple[str, ...]:
    """Return `offered` with the names in `preferred` moved to the front (in the order
    `offered` gives them: paramiko's lists AES-GCM 128 before 256)."""
    return tuple(name for name in offered if name in preferred) + tuple(
        name for name in offered if name not in preferred
    )


def _send_at_once(sock: Any) -> None:
    """Turn Nagle's algorithm off on the connection's TCP socket (paramiko leaves it on).

    With it on, each of SSH's request-and-answer steps whose request went out in more than
    one segment waited for the server's delayed ACK (40 ms on Linux): connecting to loopback
    OpenSSH 9.2 took 0.12-0.15 s, 0.07 s without it; and a download's small read requests
    and window adjustments waited the same way behind the data in flight: the benchmark's
    177 MB parents file took 1.02-1.28 s, 0.77-0.82 s without it (alternating runs).
    """
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _transport_factory(host_key_types: Collection[str]) -> Callable[..., paramiko.Transport]:
    """Make paramiko Transports that send at once (_send_at_once), offer PREFERRED_CIPHERS
    first, and the host key types known_hosts lists for the server (else paramiko asks for
    ed25519 first, and a server that has one shows it though known_hosts holds its ECDSA or
    RSA key: a false "changed")."""

    def transport(*args: Any, **kwargs: Any) -> paramiko.Transport:
        made = paramiko.Transport(*args, **kwargs)
        _send_at_once(made.sock)
        options = made.get_security_options()
        options.ciphers = _first(PREFERRED_CIPHERS, tuple(options.ciphers))
        options.key_types = _first(host_key_types, tuple(options.key_types))
        return made

    return transport


def _listdir_attr_escaped(sftp: paramiko.SFTPClient, folder: str) -> list[Any]:
    """Return what `listdir_attr` does for a folder holding a name that is not UTF-8, which
    paramiko fails to decode: each name's bytes that are not UTF-8 escaped as surrogates,
    as os.listdir gives them. SFTPClient.listdir_attr's own steps, on its request layer."""
    from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR

    kind, message = sftp._request(CMD_OPENDIR, sftp._adjust_cwd(folder))
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    handle = message.get_binary()
    found: list[Any] = []
    try:
        while True:
            try:
                kind, message = sftp._request(CMD_READDIR, handle)
            except EOFError:
                break
            if kind != CMD_NAME:
                raise paramiko.SFTPError("Expected name response")
            for _ in range(message.get_int()):
                name = message.get_string().decode("utf-8", "surrogateescape")
                long_name = message.get_string().decode("utf-8", "surrogateescape")
                attrs = paramiko.SFTPAttributes._from_msg(message, name, long_name)
                if name not in {".", ".."}:
                    found.append(attrs)
    finally:
        sftp._request(CMD_CLOSE, handle)
    return found


class _RefusedHostKey(Exception):
    """Raised by the host key policy with the key the server offered (`key`, as paramiko's
    BadHostKeyException has it)."""

    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self.key = key


class _UnknownHostKey(_RefusedHostKey):
    """The server's key is not in known_hosts."""


class _ChangedHostKey(_RefusedHostKey):
    """known_hosts lists the host with other keys only."""


class _RevokedHostKey(_RefusedHostKey):
    """A @revoked line of known_hosts names the key."""


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Accept the server's key only when the source's known_hosts holds it (the client itself
    holds no keys, so paramiko asks here every time); never adds one."""

    def __init__(self, known: KnownHosts) -> None:
        self.known = known

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        verdict = self.known.verdict(hostname, key)
        if verdict == "revoked":
            raise _RevokedHostKey(key)
        if verdict == "changed":
            raise _ChangedHostKey(key)
        if verdict != "known":
            raise _UnknownHostKey(key)


def offered_key(key: Any) -> str:
    """Return a server's host key as OpenSSH shows it (`ssh-ed25519 SHA256:…`): what the
    operator checks with the server's administrator before trusting it."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


_NO_HANDSHAKE = ("No existing session", "Error reading SSH protocol banner")


def _reason(error: BaseException) -> str:
    """Return a short, secret-free description of a connection or I/O failure."""
    if isinstance(error, socket.gaierror):
        return "cannot resolve the host name"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, EOFError):
        return "the server closed the connection"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        refused = all(
            isinstance(item, ConnectionRefusedError) or item.errno == errno.ECONNREFUSED
            for item in error.errors.values()
        )
        return "connection refused" if refused else "cannot connect"
    if isinstance(error, OSError) and error.strerror:
        return _one_line(error.strerror)
    text = _one_line(str(error)).rstrip(" :")
    if text.startswith(_NO_HANDSHAKE):
        # A server that accepts TCP but never speaks SSH: paramiko says either, by a race,
        # the banner error with its cause glued on ("...banner[Errno 104] Connection reset").
        cause = text.removeprefix(_NO_HANDSHAKE[1]).removeprefix(_NO_HANDSHAKE[0]).strip()
        cause = re.sub(r"^\[Errno \d+\]\s*", "", cause)
        suffix = f": {cause[:1].lower()}{cause[1:]}" if cause else ""
        return f"the SSH handshake did not complete (no SSH banner?){suffix}"
    return text or type(error).__name__


def _errno(error: BaseException) -> int | None:
    return error.errno if isinstance(error, OSError) else None


class SftpSource:
    """An sftp:// drop folder; implements sources.base.Source.

    `connect_timeout` bounds the TCP connect, the SSH banner, authentication and opening the
    SFTP channel; `io_timeout` bounds each wait for the server once connected.
    """

    def __init__(
        self,
        config: SourceConfig,
        connect_timeout: float = 15.0,
        io_timeout: float = 60.0,
        check_only: bool = False,
    ) -> None:
        if not config.is_sftp or not config.host:
            raise ValueError(f'source "{config.name}" is not an sftp:// source')
        self.config = config
        self.name = config.name
        self.host = config.host
        self.port = config.port
        self.root = posixpath.normpath(config.path) if config.path else "."
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self._client: Any = None
        self._sftp: Any = None
        self._openssh = False  # OpenSSH's sftp-server answers big reads
        try:
            self._connect()
            if check_only:  # check-config: look, create nothing
                self._check_root()
                self._check_folders()
            else:
                self.ensure_folders()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- connection

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def _known_as(self) -> str:
        """The server's name in known_hosts (as paramiko asks the host key policy)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _fail(self, problem: str, error: type[SourceUnreachable] = SourceUnreachable) -> NoReturn:
        # `from None`: a printed traceback must not show paramiko's own error chain.
        raise error(_one_line(f'source "{self.name}": {problem}')) from None

    def _env(self, variable: str, key: str) -> str:
        value = os.environ.get(variable)
        if value is None:
            problem = f"environment variable {variable} (named by {key}) is not set"
            self._fail(problem, SecretMissing)
        return value

    def _load_key(self) -> Any:
        path = self.config.private_key
        if path is None:
            return None
        passphrase = None
        if self.config.private_key_passphrase_env:
            passphrase = self._env(
                self.config.private_key_passphrase_env, "private_key_passphrase_env"
            )
        # A key this host cannot use is the operator's to fix: exit 2 (SourceSetupError).
        try:
            try:
                return paramiko.PKey.from_path(path)
            except TypeError:
                # PKey.from_path says "encrypted, no passphrase given" with a TypeError.
                if passphrase is None:
                    self._fail(
                        f"private_key {path} is encrypted; name the variable that holds its "
                        "passphrase in private_key_passphrase_env",
                        SourceSetupError,
                    )
            return paramiko.PKey.from_path(path, passphrase=passphrase.encode())
        except FileNotFoundError:
            self._fail(f"private_key {path} does not exist", SourceSetupError)
        except OSError as error:
            self._fail(f"cannot read private_key {path}: {_reason(error)}", SourceSetupError)
        except paramiko.UnknownKeyType:
            self._fail(f"cannot load private_key {path}: unsupported key type", SourceSetupError)
        except (paramiko.SSHException, ValueError, TypeError):
            hint = " (wrong passphrase?)" if passphrase is not None else ""
            self._fail(
                f"cannot load private_key {path}: not a usable private key{hint}", SourceSetupError
            )

    def _connect(self) -> None:
        config = self.config
        known_hosts = config.known_hosts
        if known_hosts is None:
            self._fail(
                "no known_hosts file configured; host keys are never accepted without one",
                SourceSetupError,
            )
        password = self._env(config.password_env, "password_env") if config.password_env else None
        pkey = self._load_key()
        client = paramiko.SSHClient()
        self._client = client
        try:
            known = KnownHosts.read(Path(known_hosts))
        except FileNotFoundError:
            self._fail(
                f"known_hosts {known_hosts} does not exist; create it with ssh-keyscan -p "
                f"{self.port} {self.host}, and check the fingerprints with the server's "
                "administrator",
                SourceSetupError,
            )
        except OSError as error:
            self._fail(f"cannot read known_hosts {known_hosts}: {_reason(error)}", SourceSetupError)
        client.set_missing_host_key_policy(_KnownHostsPolicy(known))
        timeout = self.connect_timeout
        try:
            client.connect(
                self.host,
                port=self.port,
                username=config.user,
                password=password,
                pkey=pkey,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
                transport_factory=_transport_factory(known.key_types(self._known_as)),
            )
        except _UnknownHostKey as error:
            raise HostKeyRejected(
                f'source "{self.name}": host key of {self._where} is not in known_hosts '
                f"{known_hosts} (the server offers {offered_key(error.key)}); add it once "
                "the server's administrator has confirmed that fingerprint"
            ) from None
        except _RevokedHostKey as error:
            raise HostKeyRejected(
                f'source "{self.name}": host key of {self._where} '
                f"({offered_key(error.key)}) is marked @revoked in known_hosts {known_hosts}"
            ) from None
        except (_ChangedHostKey, paramiko.BadHostKeyException) as error:
            raise HostKeyRejected(
                f'source "{self.name}": host key of {self._where} changed (the server now '
                f"offers {offered_key(error.key)}); update known_hosts only once the server's "
                "administrator has confirmed that fingerprint"
            ) from None
        except paramiko.AuthenticationException as error:
            methods = (
                ", ".join(error.allowed_types)
                if isinstance(error, paramiko.BadAuthenticationType)
                else None
            )
            allowed = f" (the server allows: {methods})" if methods else ""
            self._fail(
                f"authentication as {config.user} at {self._where} failed{allowed}; "
                "check private_key, its passphrase or password_env"
            )
        except (OSError, EOFError, paramiko.SSHException) as error:
            self._fail(f"cannot connect to {self._where}: {_reason(error)}")
        transport = client.get_transport()
        if transport is None:  # pragma: no cover - connect() either opens it or raises
            self._fail(f"cannot connect to {self._where}: no transport")
        transport.set_keepalive(KEEPALIVE_SECONDS)
        self._openssh = "OpenSSH" in (transport.remote_version or "")
        self._sftp = self._open_sftp(transport)

    def _open_sftp(self, transport: Any) -> Any:
        """Open the SFTP channel within `connect_timeout`.

        Channel.invoke_subsystem waits without a timeout (paramiko#515), so an outer deadline
        closes the transport, which wakes every waiter with an error.
        """
        timeout = self.connect_timeout
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            transport.close()

        deadline = threading.Timer(timeout, expire)
        deadline.daemon = True
        deadline.start()
        try:
            channel = transport.open_session(
                window_size=CHANNEL_WINDOW, max_packet_size=CHANNEL_MAX_PACKET, timeout=timeout
            )
            channel.settimeout(timeout)
            channel.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(channel)  # reads the server's version: bounded
        except (OSError, EOFError, paramiko.SSHException) as error:
            reason = "timed out" if expired.is_set() else _reason(error)
            self._fail(f"cannot open an SFTP session on {self._where}: {reason}")
        finally:
            deadline.cancel()
        if expired.is_set():
            self._fail(f"cannot open an SFTP session on {self._where}: timed out")
        channel.settimeout(self.io_timeout)
        return sftp

    @contextlib.contextmanager
    def _remote(self, action: str) -> Iterator[None]:
        """Turn failures of the connection or the server into SourceUnreachable."""
        try:
            yield
        except (OSError, EOFError, paramiko.SSHException) as error:
            self._fail(f"{action} on {self._where} failed: {_reason(error)}")

    @property
    def sftp(self) -> Any:
        if self._sftp is None:
            self._fail(f"the connection to {self._where} is closed")
        return self._sftp

    def close(self) -> None:
        sftp, client = self._sftp, self._client
        self._sftp = self._client = None
        for closable in (sftp, client):
            if closable is not None:
                with contextlib.suppress(Exception):  # closing a dead connection may fail
                    closable.close()

    def __enter__(self) -> SftpSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ----------------------------------------------------------------- paths

    def _path(self, location: str) -> str:
        """Return the absolute remote path of `location` (relative = under the drop folder)."""
        return posixpath.normpath(posixpath.join(self.root, location))

    def folder(self, name: str) -> str:
        """Return the remote path of the work folder `name` (processing, held, ...)."""
        if name not in FOLDER_NAMES:
            raise ValueError(f"not a work folder: {name!r}")
        return self._path(str(getattr(self.config.folders, name)))

    def _target(self, folder: str) -> str:
        """Return the folder for "archive/2026/11/23", "failed" or "held"."""
        head, _, rest = folder.partition("/")
        base = self.folder(head)
        return posixpath.normpath(posixpath.join(base, rest)) if rest else base

    # ----------------------------------------------------------------- remote primitives

    def _lstat(self, path: str | bytes) -> Any | None:
        """Return the attributes of `path` (not following a symlink), None if it is not there."""
        try:
            return self.sftp.lstat(path)
        except OSError as error:
            if _errno(error) == errno.ENOENT:
                return None
            raise

    def _makedirs(self, path: str) -> None:
        """mkdir -p on the server."""
        with self._remote(f"creating folder {path}"):
            attrs = self._lstat(path)
            if attrs is not None and stat.S_ISDIR(attrs.st_mode or 0):
                return
            for folder in reversed(self._missing_folders(path)):
                try:
                    self.sftp.mkdir(folder)
                except OSError:
                    # Lost a race with another daemon, or a real failure: look.
                    made = self._lstat(folder)
                    if made is None or not stat.S_ISDIR(made.st_mode or 0):
                        raise
            final = self._lstat(path)
            if final is None or not stat.S_ISDIR(final.st_mode or 0):
                self._fail(f"{path} on {self._where} is not a folder")

    def _missing_folders(self, path: str) -> list[str]:
        """Return `path` and the folders above it that are not on the server, nearest first
        (empty if `path` is there)."""
        missing: list[str] = []
        while path not in {"/", "", "."} and self._lstat(path) is None:
            missing.append(path)
            path = posixpath.dirname(path)
        return missing

    def _move(self, source: str | bytes, folder: str, name: str) -> str | None:
        """Rename `source` into `folder` as `name` (suffixed if taken), never overwriting.

        Return the new path, or None when `source` is not there (another daemon took it).
        """
        made_folder = False
        shown = text_name(os.fsdecode(source)) if isinstance(source, bytes) else source
        with self._remote(f"moving {shown} to {folder}"):
            for candidate in candidate_names(name):
                target = posixpath.join(folder, candidate)
                while self._lstat(target) is None:
                    try:
                        # SSH_FXP_RENAME: OpenSSH links then unlinks: fails if target exists.
                        self.sftp.rename(source, target)
                    except OSError as error:
                        if self._lstat(source) is None:
                            return None  # another daemon took it
                        if self._lstat(target) is not None:
                            break  # taken meanwhile: try the next name
                        if _errno(error) == errno.ENOENT and not made_folder:
                            made_folder = True  # the folder went away: make it, try again
                            self._makedirs(folder)
                            continue
                        raise
                    return target
        self._fail(f"no free name for {name} in {folder} on {self._where}")

    def _list(self, folder: str) -> list[Entry]:
        with self._remote(f"listing {folder}"):
            try:
                try:
                    attributes = self.sftp.listdir_attr(folder)
                except UnicodeDecodeError:  # a name that is not UTF-8
                    attributes = _listdir_attr_escaped(self.sftp, folder)
            except OSError as error:
                if _errno(error) == errno.ENOENT:
                    return []
                raise
        entries: list[Entry] = []
        for attrs in attributes:
            # OpenSSH lists with lstat: symlinks, folders and fifos are never picked up.
            if attrs.st_mode is None or not stat.S_ISREG(attrs.st_mode):
                continue
            name: str | None = attrs.filename
            if not is_text_name(attrs.filename):
                name = self._renamed_as_text(folder, attrs.filename)
            if name is not None:
                entries.append(Entry(name, int(attrs.st_size or 0), float(attrs.st_mtime or 0)))
        return entries

    def _renamed_as_text(self, folder: str, name: str) -> str | None:
        """Return the name a file whose name is not UTF-8 is known by (local._renamed_as_text:
        renamed on the server first if it may be picked up); None if it went away."""
        text = text_name(name)
        if not is_candidate_name(text):
            return text
        raw = posixpath.join(folder, name).encode("utf-8", "surrogateescape")
        target = self._move(raw, folder, text)
        return None if target is None else posixpath.basename(target)

    def _download(self, remote: str, local: Path) -> Path:
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with (
                self._remote(f"downloading {remote}"),
                local.open("wb") as handle,
                self._open_to_read(remote) as stream,
            ):
                if self._openssh:
                    stream.MAX_REQUEST_SIZE = OPENSSH_READ_SIZE
                read_size = stream.MAX_REQUEST_SIZE
                stream.prefetch(max_concurrent_requests=PREFETCH_REQUESTS)
                # One prefetched block per read: no re-slicing of the blocks.
                while data := stream.read(read_size):
                    handle.write(data)
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        return local

    def _open_to_read(self, remote: str) -> Any:
        """Open a remote file; raise FileUnreadable when the server denies it (that file's
        permissions, not the connection: the pass goes on with the other files)."""
        try:
            return self.sftp.open(remote, "rb")
        except OSError as error:
            if _errno(error) in (errno.EACCES, errno.EPERM):
                raise FileUnreadable(
                    f"cannot read it on {self._where}: permission denied (its owner must let "
                    f"{self.config.user or 'the SFTP user'} read it)"
                ) from error
            raise

    # ----------------------------------------------------------------- Source

    def _check_root(self) -> None:
        """Fail unless the drop folder is a folder on the server (a mistyped path would
        otherwise be created and polled, empty, for ever)."""
        with self._remote(f"looking at {self.root}"):
            attrs = self._lstat(self.root)
        if attrs is None:
            self._fail(f"drop folder {self.root} does not exist on {self._where}")
        if not stat.S_ISDIR(attrs.st_mode or 0):
            self._fail(f"drop folder {self.root} on {self._where} is not a folder")

    def _check_folders(self) -> None:
        """Fail unless `run` could use or make each work folder, and move files out of the
        drop folder: one there must be a folder it may write in; for one missing, a folder
        is made and removed where it would be made. A hidden folder is made and removed to
        find out: the server alone knows what its account may do (a read-only account lists
        and reads everything)."""
        self._probe_writing(self.root, f"writing in the drop folder {self.root}")
        for name in FOLDER_NAMES:
            path = self.folder(name)
            with self._remote(f"looking at {path}"):
                attrs = self._lstat(path)
                if attrs is not None:
                    if not stat.S_ISDIR(attrs.st_mode or 0):
                        self._fail(f"{path} on {self._where} is not a folder")
                    self._probe_writing(path, f"writing in {path}")
                    continue
                parent = posixpath.dirname(self._missing_folders(path)[-1])
            self._probe_writing(
                parent or ".", f"{path} cannot be made: creating a folder in {parent or '.'}"
            )

    def _probe_writing(self, folder: str, problem: str) -> None:
        probe = posixpath.join(folder, f".syncd-check-{os.getpid()}")
        with self._remote(problem):
            self.sftp.mkdir(probe)
            self.sftp.rmdir(probe)

    def ensure_folders(self) -> None:
        """Create processing/, held/, archive/, failed/ and reports/ when they are missing
        (the drop folder itself must be there)."""
        self._check_root()
        for name in FOLDER_NAMES:
            self._makedirs(self.folder(name))

    def list_entries(self) -> list[Entry]:
        return self._list(self.root)

    def list_processing(self) -> list[Entry]:
        return self._list(self.folder("processing"))

    def claim(self, name: str) -> str | None:
        target = self._move(self._path(name), self.folder("processing"), name)
        return None if target is None else posixpath.basename(target)

    def processing_path(self, processing_name: str) -> str:
        return posixpath.join(self.folder("processing"), processing_name)

    def fetch(self, processing_name: str, into: Path) -> Path:
        return self._download(self.processing_path(processing_name), into / processing_name)

    def holds(self, location: str) -> bool:
        path = self._path(location)
        with self._remote(f"looking at {path}"):
            attrs = self._lstat(path)
        return attrs is not None and stat.S_ISREG(attrs.st_mode or 0)

    def fetch_location(self, location: str, into: Path) -> Path:
        remote = self._path(location)
        return self._download(remote, into / posixpath.basename(remote))

    def finish(self, processing_name: str, folder: str, final_name: str) -> str:
        return self.take_back(self.processing_path(processing_name), folder, final_name)

    def work_folder(self, name: str) -> str:
        return self.folder(name)

    def size_at(self, location: str) -> int | None:
        path = self._path(location)
        with self._remote(f"looking at {path}"):
            attrs = self._lstat(path)
        if attrs is None or not stat.S_ISREG(attrs.st_mode or 0):
            return None
        return int(attrs.st_size or 0)

    def restore(self, location: str, name: str) -> str:
        return self._move_there(location, self.root, name)

    def take_back(self, location: str, folder: str, final_name: str) -> str:
        target_folder = self._target(folder)
        self._makedirs(target_folder)
        return self._move_there(location, target_folder, final_name)

    def _move_there(self, location: str, folder: str, name: str) -> str:
        """Move the file at `location` into `folder` as `name` (suffixed if taken); fail if
        it is gone."""
        source = self._path(location)
        target = self._move(source, folder, name)
        if target is None:
            self._fail(f"cannot move {source}: it is no longer on {self._where}")
        return target

    def write_report(self, name: str, content: bytes) -> str:
        folder = self.folder("reports")
        self._makedirs(folder)
        temp = posixpath.join(folder, temp_name(name, secrets.token_hex(4)))
        with self._remote(f"writing report {posixpath.join(folder, name)}"):
            try:
                self.sftp.putfo(io.BytesIO(content), temp, file_size=len(content), confirm=True)
            except BaseException:
                self._remove_quietly(temp)
                raise
        target = self._move(temp, folder, name)
        if target is None:
            self._fail(f"report {temp} vanished on {self._where} before its rename")
        return target

    def _remove_quietly(self, path: str) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):  # best effort on a failing connection
                self._sftp.remove(path)

    def remove_marker(self, marker: str, folder: str, name: str) -> None:
        if not self.holds(marker):
            return
        target_folder = self._target(folder)
        self._makedirs(target_folder)
        self._move(self._path(marker), target_folder, name)
