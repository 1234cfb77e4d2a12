"""Where syncd's time goes: py-spy over the real CLI on the benchmark files (issue 5).

    pip install py-spy
    python bench/profile.py [--rows 1000000] [--keep DIR]

Generates the files (bench/generate.py), then records with `py-spy record --format raw
--function` (collapsed stacks, one sample every 10 ms, lines folded into functions):

  1. the first load of students + parents into a fresh SQLite database;
  2. the same rows applied again (the LF copy: new sha256, same data) on that database.

and prints, per profile, the functions with the largest share of samples: "self" (the
sample's innermost frame) and "total" (the function anywhere on the stack), syncd's own
functions and the rest. The collapsed stack files stay in --keep DIR for flame graphs
(https://www.speedscope.app reads them, as does flamegraph.pl).

    python bench/profile.py --memory [--rows 100000]

instead runs the first load of both files in-process under tracemalloc and prints what
holds the memory at its fullest point among: the start of each chunk's plan and write
(PersonFile._apply_chunk) and just before the file's transaction commits (EventBuffer.write).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import generate  # noqa: E402
from run import checkpoint, syncd_argv, write_config  # noqa: E402

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short_file(path: str) -> str:
    for marker in ("/syncd/", "/site-packages/", "/lib/python3.11/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("syncd/" + tail) if marker == "/syncd/" else tail
    return path


def frame_name(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({short_file(match['file'])})"


def load_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame_name(f) for f in stack.split(";")]
        # py-spy puts "process NAME" / "thread (ID)" frames first with some options.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        stacks.append((frames, int(count)))
    return stacks


def shares(
    stacks: list[tuple[list[str], int]],
) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    total = sum(count for _, count in stacks)
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        if frames:
            self_counts[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, self_counts, inclusive


BREAKDOWN = (
    "Pipeline.process (syncd/pipeline.py)",
    "Pipeline._plan_and_apply (syncd/pipeline.py)",
    "Pipeline._plan (syncd/pipeline.py)",
    "apply_persons (syncd/db/apply.py)",
    "apply_links (syncd/db/apply.py)",
)


def callees(stacks: list[tuple[list[str], int]], name: str) -> collections.Counter[str]:
    """Samples under `name` by the function it called (its outermost occurrence)."""
    below: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        if name in frames:
            index = frames.index(name)
            below[frames[index + 1] if index + 1 < len(frames) else "(itself)"] += count
    return below


def report(title: str, path: Path, top: int) -> str:
    stacks = load_stacks(path)
    total, self_counts, inclusive = shares(stacks)
    lines = [f"### {title}", "", f"{total:,} samples ({total / 100:.0f} s at 100 Hz)", ""]
    lines += ["Breakdown (share of all samples, by the function called):", ""]
    for name in BREAKDOWN:
        if not inclusive[name]:
            continue
        parts = [
            f"{callee.split(' (')[0]} {100 * count / total:.1f}%"
            for callee, count in callees(stacks, name).most_common(8)
            if 100 * count / total >= 0.5
        ]
        short = name.split(" (")[0]
        lines.append(f"- `{short}` {100 * inclusive[name] / total:.1f}%: {', '.join(parts)}")
    lines.append("")
    lines += ["Total (anywhere on the stack), syncd functions:", ""]
    lines += ["| share | function |", "|---:|---|"]
    ours = [(n, c) for n, c in inclusive.most_common() if "(syncd/" in n]
    for name, count in ours[:top]:
        lines.append(f"| {100 * count / total:.1f}% | `{name}` |")
    lines += ["", "Self (innermost frame), any code:", ""]
    lines += ["| share | function |", "|---:|---|"]
    for name, count in self_counts.most_common(top):
        lines.append(f"| {100 * count / total:.1f}% | `{name}` |")
    lines.append("")
    return "\n".join(lines)


MEMORY_SCRIPT = """
import sys, tracemalloc, linecache
tracemalloc.start(1)
import syncd.audit as audit
best = [0, None, ""]

def probe(where):
    current, _ = tracemalloc.get_traced_memory()
    if current > best[0]:
        best[:] = [current, tracemalloc.take_snapshot(), where]

import syncd.person_files as person_files
original_chunk = person_files.PersonFile._apply_chunk
def apply_chunk(self, connection, records, errors, unread):
    probe(f"PersonFile._apply_chunk, {len(records):,} records")
    return original_chunk(self, connection, records, errors, unread)
person_files.PersonFile._apply_chunk = apply_chunk

original_write = audit.EventBuffer.write
def write(self, connection):
    probe("EventBuffer.write (before the commit)")
    return original_write(self, connection)
audit.EventBuffer.write = write

from syncd.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
_, peak = tracemalloc.get_traced_memory()
print(f"tracemalloc peak {peak / 2**20:,.0f} MiB; fullest probe {best[0] / 2**20:,.0f} MiB")
print(f"at {best[2]}")
print()
print("| MiB | blocks | where (allocating line) |")
print("|---:|---:|---|")
for stat in best[1].statistics("lineno")[:15]:
    frame = stat.traceback[0]
    name = frame.filename
    for marker in ("/syncd/", "/site-packages/", "/lib/python3.11/"):
        if marker in name:
            name = ("syncd/" if marker == "/syncd/" else "") + name.split(marker, 1)[1]
            break
    code = linecache.getline(frame.filename, frame.lineno).strip()
    print(f"| {stat.size / 2**20:,.0f} | {stat.count:,} | `{name}:{frame.lineno}` `{code[:70]}` |")
"""


def memory(rows: int, seed: int, work: Path) -> None:
    base = generate(work / "base", rows, seed=seed)
    folder = work / "mem"
    config = write_config(folder, f"sqlite:///{folder / 'syncd.db'}")
    (folder / "reports").mkdir(exist_ok=True)
    command = ["--config", str(config), "import", "--report-dir", str(folder / "reports")]
    print(f"tracemalloc: first load of {rows:,} students + parents ...", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, *command, str(base["students"]),
         str(base["parents"])],
        cwd=folder, check=True,
    )  # fmt: skip


def record(out: Path, argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["py-spy", "record", "--format", "raw", "--function", "--rate", "100",
         "--output", str(out), "--", *argv],
        cwd=cwd, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="py-spy profiles of syncd's bulk paths")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="folder for the profiles (kept)")
    parser.add_argument("--memory", action="store_true", help="tracemalloc instead of py-spy")
    parser.add_argument("--report", nargs="+", type=Path, help="only summarise these files")
    args = parser.parse_args(argv)
    if args.report:
        for path in args.report:
            print(report(path.name, path, args.top))
        return 0
    if args.memory:
        with tempfile.TemporaryDirectory(prefix="syncd-memory-") as work:
            memory(args.rows, args.seed, Path(work))
        return 0
    if not shutil.which("py-spy"):
        parser.error("py-spy is not installed: pip install py-spy")
    work = Path(tempfile.mkdtemp(prefix="syncd-profile-"))
    keep = args.keep or work
    keep.mkdir(parents=True, exist_ok=True)
    try:
        base = generate(work / "base", args.rows, seed=args.seed)
        again = generate(work / "again", args.rows, seed=args.seed, line_ending="lf")
        folder = work / "db"
        config = write_config(folder, f"sqlite:///{folder / 'syncd.db'}")
        (folder / "reports").mkdir(exist_ok=True)
        outputs = []
        for name, files in (
            ("first-load", [base["students"], base["parents"]]),
            ("applied-again", [again["students"], again["parents"]]),
        ):
            out = keep / f"{name}.collapsed.txt"
            command = syncd_argv(config, "import", "--report-dir", str(folder / "reports"))
            print(f"py-spy record: {name} ...", file=sys.stderr, flush=True)
            wall = record(out, [*command, *map(str, files)], folder)
            outputs.append((f"{name} ({args.rows:,} students + parents), {wall:.0f} s", out))
            if name == "first-load":
                checkpoint(folder / "syncd.db")
        commit = subprocess.run(
            ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        print(f"syncd {commit}, py-spy --rate 100 --function\n")
        for title, out in outputs:
            print(report(title, out, args.top))
        print(f"collapsed stacks: {', '.join(str(o) for _, o in outputs)}", file=sys.stderr)
    finally:
        for path in work.iterdir():
            if path != keep and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
        if args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
