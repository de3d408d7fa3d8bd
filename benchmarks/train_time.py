"""Real-data `clinrisk train` wall time, at the default thread count and at one thread.

Each run trains the stroke model on the spec's 5,110-row file into a fresh state directory,
in a fresh process (`common.measure`: wall time and peak RSS). The default thread count is
the cores this process may use (`clinrisk.threads`); `CLINRISK_THREADS=1` is the comparison.

    .venv/bin/python benchmarks/train_time.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common


def train_once(threads: str | None) -> common.Measured:
    with common.work_dir("train") as tmp:
        extra = {"CLINRISK_THREADS": threads} if threads else {}
        command = [str(common.VENV_BIN / "clinrisk"), "train"]
        return common.check(common.measure(command, common.bench_env(Path(tmp), **extra)), "clinrisk train")


def render(runs: dict[str, common.Measured]) -> str:
    from clinrisk.threads import available_cores

    rows = [[name, f"{m.seconds:.1f}", f"{m.peak_rss_mb:,.0f}"] for name, m in runs.items()]
    return "\n".join(
        [
            "## Training: `clinrisk train` on the real data",
            "",
            common.run_stamp(),
            "",
            "The stroke spec on its 5,110-row file, every candidate compared out of fold, threshold, refit, "
            "holdout, calibration, signed bundle (with the lean scorer's check), registration and gate, in a "
            f"fresh state directory each time. Default threads: the {available_cores()} cores this "
            "process may use (`CLINRISK_THREADS` unset).",
            "",
            common.markdown_table(["threads", "wall (s)", "peak RSS (MB)"], rows),
            "",
            comparison(runs),
        ]
    )


def comparison(runs: dict[str, common.Measured]) -> str:
    """Which thread count was faster in this run, and what to set on a shared host."""
    if len(runs) < 2:
        return ""
    default, one = (m.seconds for m in runs.values())
    if one < default:
        return (
            f"One thread was {default / one:.1f}x faster than the default in this run: OpenMP threads "
            "wait for cores that other jobs hold. On a shared host, set `CLINRISK_THREADS=1`."
        )
    return f"The default was {one / default:.1f}x faster than one thread in this run."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Only the default thread count.")
    parser.add_argument("--results", type=common.results_file, default=None, help="Results file to update.")
    args = parser.parse_args(argv)
    common.exit_on_sigterm()
    runs = {"default": train_once(None)}
    if not args.quick:
        runs["1 (CLINRISK_THREADS=1)"] = train_once("1")
    body = render(runs)
    print(body)
    common.write_results(common.results_path(args.results, args.quick), "train", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
