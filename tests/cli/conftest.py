"""Drive the real CLI in-process: a tmp config, a drop folder, captured output and audit."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncd.cli import main


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


class Syncd:
    """A syncd installation in a temp folder: config.toml, drop/, syncd.db, audit.jsonl."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.drop_dir = root / "drop"
        self.audit_path = root / "audit.jsonl"
        self.config_path = root / "config.toml"
        self.configure()

    def configure(self, sources: list[dict[str, Any]] | None = None, **source: Any) -> None:
        """Write the config: one local source on drop/ with `source` keys, or `sources`."""
        if sources is None:
            sources = [{"name": "district-a", "url": "file:drop", "min_age": "0s", **source}]
        lines = [
            "[database]",
            f"url = {toml_value(self.database_url)}",
            "[audit]",
            f"path = {toml_value(str(self.audit_path))}",
        ]
        for entry in sources:
            lines.append("[[sources]]")
            tables = {k: v for k, v in entry.items() if isinstance(v, dict) and k != "mode"}
            for key, value in entry.items():
                if key not in tables:
                    lines.append(f"{key} = {toml_value(value)}")
            for name, table in tables.items():
                lines.append(f"[sources.{name}]")
                lines.extend(f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items())
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def __call__(self, *args: str) -> Outcome:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main(["--config", str(self.config_path), *args])
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        return Outcome(code, stdout.getvalue(), stderr.getvalue())

    def write(self, name: str, content: str | bytes, folder: Path | None = None) -> Path:
        """Write a file (into the root by default) with an mtime in the past."""
        path = (folder or self.root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        old = time.time() - 60
        os.utime(path, (old, old))
        return path

    def drop(self, name: str, content: str | bytes) -> Path:
        return self.write(name, content, self.drop_dir)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        events = [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]
        return [e for e in events if name is None or e["event"] == name]

    def export(self, what: str = "persons") -> list[dict[str, Any]]:
        outcome = self("export", what, "--json")
        assert outcome.exit_code == 0, outcome.stderr
        return outcome.json()  # type: ignore[no-any-return]

    def links(self) -> set[tuple[str, str, str]]:
        links = self.export("relationships")
        return {(link["parent"], link["child"], link["status"]) for link in links}


@pytest.fixture
def syncd(tmp_path: Path, database_url: str) -> Iterator[Syncd]:
    """A syncd on SQLite and on PostgreSQL (the test runs once per backend)."""
    yield Syncd(tmp_path, database_url)


@pytest.fixture
def syncd_sqlite(tmp_path: Path) -> Iterator[Syncd]:
    """A syncd on SQLite only, for behaviour that does not depend on the database."""
    yield Syncd(tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
