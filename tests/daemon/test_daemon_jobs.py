"""A source's poll and cron jobs are two APScheduler jobs (each limited to one instance):
they must never run one source at once (SPEC §3.4: a slow run is never started twice)."""

from __future__ import annotations

from pathlib import Path

from syncd.cli import App
from syncd.daemon import Daemon, SourceRunner

STUDENTS = "SyncID,First name,Last name\nS1,Lena,Müller\n"


def _app(root: Path) -> App:
    (root / "drop").mkdir()
    config = root / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{root / "syncd.db"}"\n'
        f'[audit]\npath = "{root / "audit.jsonl"}"\n'
        '[[sources]]\nname = "a"\nurl = "file:drop"\npoll = "60s"\ncron = "0 2 * * *"\n'
        'min_age = "0s"\n',
        encoding="utf-8",
    )
    return App(config_option=str(config), debug=False)


def test_a_job_arriving_while_its_source_runs_leaves_it_a_rescan(tmp_path: Path) -> None:
    app = _app(tmp_path)
    daemon = Daemon(app, None)
    [config] = app.config.sources
    runner = daemon.runners["a"] = SourceRunner(app, config)
    (tmp_path / "drop" / "students.csv").write_text(STUDENTS, encoding="utf-8")
    with runner.running:  # the poll job's pass is in hand
        daemon._job("a")  # the cron job fires meanwhile
        assert runner.rescan.is_set()
        assert not (tmp_path / "drop" / "archive").exists()  # it did not run the source
    daemon._job("a")
    assert list((tmp_path / "drop" / "archive").rglob("students.csv"))
    assert not runner.running.locked()
    app.close()
