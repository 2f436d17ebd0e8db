"""The daily run at scale: catch-up, then the next day, timed per stage, against a physical floor.

    uv run python benchmarks/scale.py --users 100000 --days 120 [--format parquet] [--home DIR]

Generates the sample (``strata generate``), holds its last day back, runs ``strata run`` (the
catch-up of every other day plus that day's snapshot), lands the last day and runs again (the
next-day run a schedule makes every morning). Each ``strata run`` is its own process, as a user
starts it; for each the script prints the wall time, the CPU time (user + system), the peak
resident memory of the whole process tree (the CLI and any process it starts, dbt running
inside it; sampled every 0.2 s from /proc, so Linux only, and shared pages count once per
process), and the Dagster steps grouped by stage, each stage with the CPU seconds the process
tree used during its steps and the cores that keeps busy (CPU per wall second: a stage at 1.0
leaves one core of two idle). The floor is one plain DuckDB scan of the
same landing files (every table, every column read): no pipeline can ingest the data faster
than it can read it once, so the ratio to the floor says how much of the run is work beyond
reading. The scan runs right after each run, on the files that run read: a shared machine's
speed can change by half within minutes, and a ratio to a scan made at another moment would
carry that change.

Without --home the data lives in a temporary folder that is removed at the end. With --home,
``--reuse`` keeps the landing files a previous call generated there (same --users, --days,
--seed and --format) and starts again from an empty warehouse; ``--next-day-only`` restores the
state a previous call saved right after its catch-up and times only the next-day run (to measure
a change to the daily path without a 15-minute catch-up at 1M users).

A catch-up builds one snapshot, so a next-day run right after it finds one snapshot kept. A
schedule that has run for weeks has one per day, and a step that reads every snapshot kept grows
with them. ``--snapshots N`` has ``strata run --start .. --end ..`` build the N snapshots up to
the catch-up's own in date order (a third timed run), so the next day runs with N kept, as it
would after N days in production.
"""

from __future__ import annotations

import argparse
import bisect
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

from dagster_project.pipeline_run import stage_of, step_times

REPO = Path(__file__).resolve().parents[1]
STRATA = [sys.executable, "-m", "dagster_project.cli"]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def tree_usage(root: int) -> tuple[int, float]:
    """Resident memory (bytes) and CPU seconds (user + system, with those of the children each
    process has waited for) of ``root`` and all its descendants, from /proc/<pid>/stat."""
    fields: dict[int, list[str]] = {}
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii") as f:
                # after "pid (command)": state, ppid, ... (proc(5) fields 3 onwards)
                stat = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        fields[int(entry.name)] = stat
        children[int(stat[1])].append(int(entry.name))
    rss, ticks, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        stat = fields.get(pid)
        if stat is None:
            continue
        ticks += sum(int(value) for value in stat[11:15])  # utime, stime, cutime, cstime
        rss += int(stat[21]) * PAGE_BYTES
    return rss, ticks / CLOCK_TICKS


@dataclass(frozen=True)
class Timed:
    """A finished process: wall seconds; CPU seconds (user + system, its own and those of the
    children it waited for), steadier than the wall time on a shared machine; the peak RSS of
    its process tree in bytes; its exit code; and (epoch seconds, CPU seconds of the tree so
    far) every 0.2 s, to tell how many cores each step kept busy."""

    wall: float
    cpu: float
    peak: int
    code: int
    cpu_samples: tuple[tuple[float, float], ...] = ()

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the process tree used between two epoch times (interpolated)."""
        return _cpu_at(self.cpu_samples, end) - _cpu_at(self.cpu_samples, start)


def _cpu_at(samples: tuple[tuple[float, float], ...], moment: float) -> float:
    if not samples:
        return 0.0
    times = [t for t, _ in samples]
    i = bisect.bisect_left(times, moment)
    if i == 0:
        return samples[0][1]
    if i == len(samples):
        return samples[-1][1]
    (t0, c0), (t1, c1) = samples[i - 1], samples[i]
    return c0 + (c1 - c0) * (moment - t0) / (t1 - t0)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_process(args: list[str], env: dict[str, str], log: Path) -> Timed:
    """Run ``args`` and time it."""
    # gigabytes copied or generated just before (a restored warehouse) would otherwise be
    # written back to disk during the timed run
    os.sync()
    peak, samples = 0, []
    start, cpu_before = time.perf_counter(), _children_cpu_seconds()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                rss, cpu = tree_usage(process.pid)
                peak = max(peak, rss)
                samples.append((time.time(), cpu))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
    cpu = _children_cpu_seconds() - cpu_before
    return Timed(time.perf_counter() - start, cpu, peak, code, tuple(samples))


@dataclass(frozen=True)
class Step:
    """One finished Dagster step: its run's job, its key, its start and end (epoch seconds)."""

    job: str
    key: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def finished_steps(dagster_home: Path, since: float) -> list[Step]:
    """Every finished Dagster step of the runs started after ``since``."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    instance = dg.DagsterInstance.get()
    out = []
    for record in reversed(instance.get_run_records()):
        run = record.dagster_run
        stats = instance.get_run_stats(run.run_id)
        if (stats.start_time or 0) < since:
            continue
        out += [Step(run.job_name, *times) for times in step_times(instance, run.run_id)]
    return out


def floor_seconds(landing: Path) -> float:
    """One DuckDB scan of every landing file, every column materialised once."""
    con = duckdb.connect()
    start = time.perf_counter()
    for table in sorted(p.name for p in landing.iterdir() if p.is_dir()):
        for suffix, reader in (("csv", "read_csv"), ("parquet", "read_parquet")):
            files = sorted(str(f) for f in (landing / table).rglob(f"*.{suffix}"))
            options = "all_varchar = true, union_by_name = true" if suffix == "csv" else ""
            if files:
                con.execute(
                    "select count(*), sum(length(cast(columns(*) as varchar))) "
                    f"from {reader}(?{', ' + options if options else ''})",
                    [files],
                ).fetchall()
    seconds = time.perf_counter() - start
    con.close()
    return seconds


def print_run(name: str, run: Timed, steps: list[Step]) -> None:
    wall = run.wall
    print(
        f"\n{name}: {wall:,.1f} s wall, {run.cpu:,.1f} s CPU (user + system), "
        f"peak RSS {run.peak / 2**30:,.2f} GiB (process tree)"
    )
    # cores: CPU seconds per wall second of the stage; below 2 on this machine, a core sat idle
    seconds: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    for step in steps:
        seconds[stage_of(step.key)] += step.seconds
        cpu[stage_of(step.key)] += run.cpu_between(step.start, step.end)
    print(f"  {'stage':<28}{'seconds':>10}{'share':>8}{'CPU s':>9}{'cores':>7}")
    for stage, stage_seconds in sorted(seconds.items(), key=lambda kv: -kv[1]):
        cores = cpu[stage] / stage_seconds if stage_seconds else 0.0
        print(
            f"  {stage:<28}{stage_seconds:>10,.1f}{stage_seconds / wall:>8.0%}"
            f"{cpu[stage]:>9,.1f}{cores:>7.2f}"
        )
    outside = wall - sum(seconds.values())
    outside_cpu = run.cpu - sum(cpu.values())
    print(
        f"  {'outside steps (CLI, runs)':<28}{outside:>10,.1f}{outside / wall:>8.0%}"
        f"{outside_cpu:>9,.1f}"
    )


# a timed `strata run`: its name, process figures, Dagster steps and the floor scan's seconds
# right after it
Measured = tuple[str, Timed, list[Step], float]


def report(runs: list[Measured], logs: Path) -> None:
    for name, run, steps, _ in runs:
        print_run(name, run, steps)
    print("\nfloor (one DuckDB scan of every landing file, right after the run):")
    for name, run, _, floor in runs:
        print(f"  {name}: floor {floor:,.1f} s, the run {run.wall / floor:,.1f} x the floor")
    print(f"\nslowest steps of the next-day run ({logs}):")
    _, run, last_steps, _ = runs[-1]
    for step in sorted(last_steps, key=lambda s: -s.seconds)[:10]:
        cores = run.cpu_between(step.start, step.end) / step.seconds if step.seconds else 0.0
        print(f"  {step.seconds:>8,.1f} s  {cores:>5.2f} cores  {step.job:<14} {step.key}")


# what the benchmark keeps under --home across calls; everything else there is a run's output
INPUTS = ("landing", "held-back", "truth", "generated-with.txt", "benchmark-logs", "after-catch-up")


def remove_run_state(home: Path) -> None:
    for entry in home.iterdir():
        if entry.name not in INPUTS:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def copy_run_state(source: Path, destination: Path) -> None:
    for entry in source.iterdir():
        if entry.name not in INPUTS:
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, destination / entry.name)


def return_held_back_days(home: Path) -> None:
    for day_dir in (home / "held-back").glob("*/*"):
        target = home / "landing" / day_dir.parent.name / day_dir.name
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(day_dir), str(target))


def restart_from_landing(home: Path) -> None:
    """Everything a run wrote goes; the held-back day returns to landing for a new catch-up."""
    remove_run_state(home)
    shutil.rmtree(home / "after-catch-up", ignore_errors=True)
    return_held_back_days(home)


def save_state(home: Path, saved: Path) -> None:
    """The home as the catch-up left it (the last day still held back), for --next-day-only."""
    shutil.rmtree(saved, ignore_errors=True)
    saved.mkdir()
    copy_run_state(home, saved)


def measured_run(
    name: str, home: Path, env: dict[str, str], logs: Path, extra: list[str]
) -> Measured | int:
    """One timed `strata run` (with `extra` arguments), its steps and the floor right after;
    the exit code, with the log's tail printed, when it fails."""
    since = time.time()
    log = logs / f"{name.replace(' ', '-')}.log"
    run = timed_process([*STRATA, "run", "--home", str(home), *extra], env, log)
    if run.code:
        print(log.read_text()[-5000:])
        print(f"{name} failed with exit code {run.code}; log: {log}")
        return run.code
    steps = finished_steps(home / "dagster", since)
    return (name, run, steps, floor_seconds(home / "landing"))


def next_day_only(home: Path, saved: Path, env: dict[str, str], logs: Path) -> int:
    if not saved.is_dir():
        print(f"--next-day-only: no saved catch-up state in {saved}; run without it first")
        return 2
    remove_run_state(home)
    copy_run_state(saved, home)
    return_held_back_days(home)  # every day landed; the warehouse has all but the last
    measured = measured_run("next-day run", home, env, logs, [])
    if isinstance(measured, int):
        return measured
    report([measured], logs)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--home", type=Path, default=None, help="keep the data here")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the landing files generated in --home"
    )
    parser.add_argument(
        "--snapshots",
        type=int,
        default=1,
        help="snapshots kept before the next-day run (the catch-up builds 1; more are built "
        "in date order by a timed `strata run --start .. --end ..`)",
    )
    parser.add_argument(
        "--next-day-only",
        action="store_true",
        help="restore --home's saved post-catch-up state and time the next-day run alone",
    )
    args = parser.parse_args()
    if (args.reuse or args.next_day_only) and not args.home:
        parser.error("--reuse and --next-day-only need --home")
    if not 1 <= args.snapshots < args.days:
        parser.error("--snapshots must be at least 1 and fewer than --days")

    scratch = None if args.home else tempfile.mkdtemp(prefix="strata-scale-")
    home = (args.home or Path(scratch)).resolve()
    env = {**os.environ, "STRATA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    logs = home / "benchmark-logs"
    try:
        home.mkdir(parents=True, exist_ok=True)
        logs.mkdir(exist_ok=True)
        saved = home / "after-catch-up"
        stamp = home / "generated-with.txt"
        wanted = f"{args.users} {args.days} {args.seed} {args.format}\n"
        if args.next_day_only:
            return next_day_only(home, saved, env, logs)
        reuse = args.reuse and stamp.exists() and stamp.read_text() == wanted
        if args.reuse and not reuse:
            print(f"--reuse: {home} holds no landing files generated with these arguments")
        if reuse:
            restart_from_landing(home)
        generate = [
            *STRATA,
            "generate",
            "--users",
            str(args.users),
            "--days",
            str(args.days),
            "--seed",
            str(args.seed),
            "--format",
            args.format,
            "--home",
            str(home),
        ]
        if not reuse:
            stamp.unlink(missing_ok=True)
            generated = timed_process(generate, env, logs / "generate.log")
            if generated.code:
                print((logs / "generate.log").read_text())
                return generated.code
            stamp.write_text(wanted)
        landing = home / "landing"
        size = sum(f.stat().st_size for f in landing.rglob("*") if f.is_file())
        print(
            f"{args.users:,} users x {args.days} days: landing files ({args.format}) "
            f"{size / 2**20:,.0f} MiB"
        )
        if not reuse:
            print(
                f"generate: {generated.wall:,.1f} s wall, "
                f"peak RSS {generated.peak / 2**30:,.2f} GiB"
            )

        last_day = max(p.name for p in (landing / "orders").iterdir())
        held = home / "held-back"
        for day_dir in landing.glob(f"*/{last_day}"):
            target = held / day_dir.parent.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.move(str(day_dir), str(target / last_day))

        # The catch-up's snapshot is the day before the held-back one. The earlier ones are built
        # oldest first and that one again last, as days of production would have built them
        # (each snapshot's previous segments and since-dates come from the one before).
        newest = date.fromisoformat(last_day.removeprefix("date=")) - timedelta(days=1)
        oldest = newest - timedelta(days=args.snapshots - 1)
        plan = [("catch-up run", [])]
        if args.snapshots > 1:
            earlier = ["--start", str(oldest), "--end", str(newest)]
            plan.append((f"{args.snapshots} snapshots in order", earlier))
        plan.append(("next-day run", []))
        runs: list[Measured] = []
        for name, extra in plan:
            if name == "next-day run":
                if args.home:  # for --next-day-only
                    save_state(home, saved)
                for day_dir in held.glob(f"*/{last_day}"):
                    shutil.move(str(day_dir), str(landing / day_dir.parent.name / last_day))
            measured = measured_run(name, home, env, logs, extra)
            if isinstance(measured, int):
                return measured
            runs.append(measured)

        report(runs, logs)
        return 0
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
