"""Integration fixtures: a real OpenSSH server (`sshd`, see tests/integration/sshd.py)."""

from __future__ import annotations

from tests.integration.sshd import sshd

__all__ = ["sshd"]
