"""Print how long loading the Dagster code location takes (target: under 10 s).

Run: uv run python benchmarks/load_definitions.py
Each measurement is a fresh Python process, as a run worker or `dg dev` would be.
"""

import statistics
import subprocess
import sys
import time

SNIPPET = (
    "from dagster_project.definitions import defs; "
    "d = defs(); d.resolve_asset_graph(); d.resolve_all_job_defs()"
)


def main(repeats: int = 3) -> None:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", SNIPPET], check=True)
        timings.append(time.perf_counter() - started)
    print(
        f"definitions load: median {statistics.median(timings):.1f} s "
        f"(runs: {', '.join(f'{t:.1f}' for t in timings)})"
    )


if __name__ == "__main__":
    main()
