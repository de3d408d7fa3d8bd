"""Retraining: wall time and peak memory of one retrain at growing data sizes.

Writes the real data resampled with small noise at each size, trains a first champion on
the real data, then runs one retrain per size in a fresh process against that registry (so
the promotion gate compares with a champion, as in production). It runs the Prefect
`retrain` flow (under `prefect_test_harness`) when `clinrisk.flows.retrain` exists, else the
plain `clinrisk.retraining.retrain` it composes. Reports how time grows with rows, and where
the time goes stage by stage.

    .venv/bin/python benchmarks/retrain.py            # 5k, 50k, 500k rows
    .venv/bin/python benchmarks/retrain.py --quick    # smoke run on small sizes
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import inspect
import itertools
import json
import math
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

NOISE = 0.02  # numeric columns jittered by 2 % of their standard deviation
# Plain functions the retrain is made of, timed wherever they are looked up: (module, attribute).
STAGES = (
    ("clinrisk.retraining", "load_and_validate"),
    ("clinrisk.train", "train_model"),
    ("clinrisk.registry", "log_and_register"),
    ("clinrisk.promotion", "apply_gate"),
    ("clinrisk.monitoring.comparison", "compare_on_holdout"),  # only in the flow
)
FLOW_MODULE = "clinrisk.flows.retrain"


# --- run in a fresh process ---------------------------------------------------------------


def time_stages(timings: dict[str, float]) -> None:
    """Wrap each stage function with a timer, in its module and in every clinrisk module that imported it."""
    for module_name, attribute in STAGES:
        try:
            original = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError):
            continue
        timed = _timed(original, attribute, timings)
        for loaded in [m for name, m in sys.modules.items() if name.startswith("clinrisk") and m]:
            if getattr(loaded, attribute, None) is original:
                setattr(loaded, attribute, timed)


def _timed(function, name: str, timings: dict[str, float]):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timings[name] += time.perf_counter() - started

    return wrapper


def flow_available() -> bool:
    """Whether the Prefect retrain flow has been built."""
    try:
        return importlib.util.find_spec(FLOW_MODULE) is not None
    except ModuleNotFoundError:
        return False


def call_flow(data_path: Path) -> dict:
    """Run the Prefect `retrain` flow on `data_path`, with a temporary Prefect server up beforehand."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        flow = importlib.import_module(FLOW_MODULE).retrain
        parameters = inspect.signature(flow.fn).parameters
        kwargs = {"data_path": str(data_path)}
        if "model_name" in parameters:
            kwargs["model_name"] = "stroke"
        started = time.perf_counter()
        result = flow(**kwargs)
        return {"seconds": time.perf_counter() - started, "result": result}


def call_function(data_path: Path) -> dict:
    """Run the plain retrain the CLI and the flow share."""
    from clinrisk.retraining import retrain
    from clinrisk.settings import load_settings

    started = time.perf_counter()
    result = retrain(load_settings(), "stroke", data_path)
    return {"seconds": time.perf_counter() - started, "result": result}


def run_one(data_path: Path, mode: str) -> dict:
    """One retrain, timed as a whole and stage by stage, with this process's peak memory."""
    timings: dict[str, float] = defaultdict(float)
    time_stages(timings)
    outcome = call_flow(data_path) if mode == "flow" else call_function(data_path)
    return {
        "mode": mode,
        "seconds": outcome["seconds"],
        "stages": dict(timings),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "result": outcome["result"] if isinstance(outcome["result"], dict) else str(outcome["result"]),
    }


# --- the benchmark ------------------------------------------------------------------------


def write_sizes(sizes: list[int], directory: Path) -> dict[int, Path]:
    """The real data resampled with small noise at each size, as CSV training files."""
    spec = common.load_spec()
    frame = common.real_data(spec)
    paths = {}
    for rows in sizes:
        paths[rows] = directory / f"train-{rows}.csv"
        common.resample(frame, rows, seed=rows, noise=NOISE, spec=spec).to_csv(paths[rows], index=False)
    return paths


def measure_sizes(args: argparse.Namespace, home: Path) -> list[dict]:
    """A first champion on the real data, then one measured retrain per size, each in a new process."""
    print("training the first champion ...", flush=True)
    common.train_champion(home)
    paths = write_sizes(args.sizes, home)
    runs = []
    for rows, path in paths.items():
        print(f"retrain on {rows:,} rows ({args.mode}) ...", flush=True)
        command = [sys.executable, __file__, "--run-one", str(path), "--mode", args.mode]
        measured = common.check(common.measure(command, common.bench_env(home), timeout=3600), "retrain")
        run = json.loads(measured.stdout.strip().splitlines()[-1])
        run.update(rows=rows, wall_seconds=measured.seconds, tree_peak_rss_mb=measured.peak_rss_mb)
        print(f"  {run['seconds']:.1f} s in the call, {measured.seconds:.1f} s wall", flush=True)
        runs.append(run)
    return runs


def growth_exponent(small: dict, big: dict) -> float:
    """k in time ∝ rows^k between two runs (1 is linear)."""
    return math.log(big["seconds"] / small["seconds"]) / math.log(big["rows"] / small["rows"])


def render(runs: list[dict], args: argparse.Namespace) -> str:
    """The markdown section: time and memory per size, stage split, growth and the verdict."""
    stage_names = [name for _, name in STAGES]
    headers = ["rows", "retrain call (s)", "process wall (s)", "peak RSS (MB)",
               *[f"{n} (s)" for n in stage_names], "candidate", "promoted"]  # fmt: skip
    rows = []
    for run in runs:
        stages = [f"{run['stages'][n]:.1f}" if n in run["stages"] else "-" for n in stage_names]
        result = run["result"] if isinstance(run["result"], dict) else {}
        rows.append([f"{run['rows']:,}", f"{run['seconds']:.1f}", f"{run['wall_seconds']:.1f}",
                     f"{run['peak_rss_mb']:,.0f}", *stages, result.get("candidate", "?"),
                     result.get("promoted", "?")])  # fmt: skip
    what = (
        "the Prefect `retrain` flow (under `prefect_test_harness`)"
        if args.mode == "flow"
        else ("`clinrisk.retraining.retrain` (the plain function the CLI and the flow share)")
    )
    lines = [
        "## Retraining: time and memory against rows",
        "",
        common.run_stamp(),
        "",
        f"One retrain of {what} per size, each in a fresh process against a registry whose champion was "
        f"trained on the real data. Training files are the real data resampled with numeric noise of "
        f"{NOISE:.0%} of each column's sd. Peak RSS is the retrain process's own (a Prefect test server, "
        "if any, runs in a child and is not counted); stage columns are the plain functions' own time.",
        "",
        common.markdown_table(headers, rows),
        "",
        *growth_lines(runs),
    ]
    return "\n".join(lines)


def growth_lines(runs: list[dict]) -> list[str]:
    """How time grows between consecutive sizes, and the target verdict on the last step."""
    if len(runs) < 2:
        return ["Growth: needs at least two sizes."]
    lines = []
    for small, big in itertools.pairwise(runs):
        times, rows = big["seconds"] / small["seconds"], big["rows"] / small["rows"]
        lines.append(f"- {small['rows']:,} → {big['rows']:,} rows: time x{times:.2f} for x{rows:.3g} rows "
                     f"(time ∝ rows^{growth_exponent(small, big):.2f})")  # fmt: skip
    exponent = growth_exponent(runs[-2], runs[-1])
    verdict = "met" if exponent <= 1.0 else f"missed: time grows as rows^{exponent:.2f}"
    return [
        "How the retrain call's time grows:",
        "",
        *lines,
        "",
        f"**Target** (no worse than linear from {runs[-2]['rows']:,} to {runs[-1]['rows']:,} rows): "
        f"{verdict}.",
        *stage_growth(runs[-2], runs[-1]),
    ]


def stage_growth(small: dict, big: dict) -> list[str]:
    """How each stage's own time grows on the last step: fixed costs can hide a superlinear one."""
    parts = []
    for name in [n for _, n in STAGES if n in small["stages"] and n in big["stages"]]:
        before, after = small["stages"][name], big["stages"][name]
        if before > 0 and after > 0:
            k = math.log(after / before) / math.log(big["rows"] / small["rows"])
            parts.append(f"{name} x{after / before:.1f} (rows^{k:.2f})")
    if not parts:
        return []
    return [
        "",
        "Stage by stage on the same step (fixed costs such as logging and start-up flatten the total; "
        "a stage above rows^1 is where time would go at larger sizes): " + ", ".join(parts) + ".",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 50_000, 500_000])
    parser.add_argument(
        "--mode", choices=["auto", "flow", "function"], default="auto",
        help="What to time: the Prefect flow, the plain function, or the flow when it exists (auto).",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run on small sizes, written under .work/."
    )
    parser.add_argument("--results", type=common.results_file, default=None, help="Results file to update.")
    parser.add_argument("--run-one", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [2_000, 5_000, 20_000]
    if args.mode == "auto":
        args.mode = "flow" if flow_available() else "function"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.exit_on_sigterm()
    if args.run_one:
        print(json.dumps(run_one(args.run_one, args.mode), default=str))
        return 0
    with common.work_dir("retrain") as tmp:
        runs = measure_sizes(args, Path(tmp))
    common.save_raw("retrain", runs)
    body = render(runs, args)
    print(body)
    common.write_results(common.results_path(args.results, args.quick), "retrain", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
