"""Batch scoring: `clinrisk predict` on a million-row file against a plain `predict_proba`.

Trains a champion, writes the real data resampled to `--rows` rows, then in fresh processes
measured the same way (wall time, peak RSS from wait4):
- `clinrisk predict` on the file (read in chunks, validate, score, write), with the champion
  in the local cache (the usual case: only the alias is asked of the registry) and, after
  emptying the cache, loaded from the registry through MLflow; also on a 1-row file, both
  ways, to subtract its fixed start-up cost, and on a smaller file to show memory does not
  grow with the file;
- a plain script that loads the same champion, reads the same file into one DataFrame and
  calls `pipeline.predict_proba` on it.
Then times the cached start-up step by step, and profiles `score_file` to show where its
time goes, stage by stage.

    .venv/bin/python benchmarks/batch.py            # 1,000,000 rows, a few minutes on 2 cores
    .venv/bin/python benchmarks/batch.py --quick    # 100,000 rows, smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

TARGET_SHARE = 0.90
MLFLOW_TARGET = 3.0  # issue #12: at least 3x `mlflow models predict`, end to end on the same file
MEMORY_GROWTH_ALLOWED = 1.25  # peak RSS for the big file / for the small one
LEAN_CHECK_ROWS = 100_000  # rows on which the lean scorer is compared with scikit-learn
# Stages of score_file: (label, [(file under clinrisk/, function), ...]) in cProfile's statistics.
# Alternatives cover the scikit-learn path (RiskModel.predict) and the lean one (score_frame).
STAGES = (
    ("read (pyarrow CSV/Parquet chunks)", [("data.py", "iter_table")]),
    ("validate (validate_frame)", [("data.py", "validate_frame")]),
    ("choose the scorer (check ONNX against scikit-learn)", [("predict.py", "choose_scorer")]),
    ("score (model)", [("serving/scorer.py", "score_frame"), ("model.py", "predict")]),
    ("write (_TableWriter.write)", [("predict.py", "write")]),
)


# --- helpers run in fresh processes -------------------------------------------------------


def plain_predict_proba(input_path: Path) -> dict:
    """Load the champion, read the whole file into a DataFrame, then time predict_proba alone."""
    from clinrisk import registry
    from clinrisk.data import read_table
    from clinrisk.settings import load_settings

    model = registry.load_alias(load_settings(), "stroke", registry.CHAMPION)
    started = time.perf_counter()
    frame = read_table(input_path, model.spec)
    read = time.perf_counter() - started
    started = time.perf_counter()
    proba = model.predict_proba(frame)  # the pipeline and the two-number calibration map
    scored = time.perf_counter() - started
    return {"rows": len(proba), "read_seconds": read, "predict_seconds": scored, "mean": float(proba.mean())}


def lean_scorer(input_path: Path) -> dict:
    """Score the same in-memory DataFrame with the champion bundle's stored lean scorer."""
    import numpy as np

    from clinrisk import registry
    from clinrisk.data import read_table
    from clinrisk.serving.scorer import score_frame
    from clinrisk.settings import load_settings

    settings = load_settings()
    started = time.perf_counter()
    served = registry.load_served_alias(settings, "stroke", registry.CHAMPION)
    scorer = served.scorer
    built = time.perf_counter() - started
    model = registry.load_alias(settings, "stroke", registry.CHAMPION)
    frame = read_table(input_path, model.spec)
    started = time.perf_counter()
    proba = score_frame(scorer, frame, model.spec)
    scored = time.perf_counter() - started
    sample = frame.iloc[:LEAN_CHECK_ROWS]
    diff = float(np.max(np.abs(proba[: len(sample)] - model.predict_proba(sample))))
    return {"rows": len(proba), "build_seconds": built, "predict_seconds": scored, "max_abs_diff": diff,
            "path": scorer.path}  # fmt: skip


def profile_score_file(input_path: Path, output_path: Path, chunk_rows: int) -> dict:
    """Run score_file under cProfile; return each stage's cumulative seconds and the top functions."""
    import cProfile
    import io
    import pstats

    from clinrisk import registry
    from clinrisk.predict import score_file
    from clinrisk.settings import load_settings

    model = registry.load_served_alias(load_settings(), "stroke", registry.CHAMPION)  # as `predict` does
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(
        score_file, model, "bench", input_path, output_path, chunk_rows=chunk_rows, progress=False
    )
    total = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    stages = {label: sum(_cumulative(stats, *where) for where in places) for label, places in STAGES}
    out = io.StringIO()
    stats.stream = out
    stats.strip_dirs().sort_stats("cumulative").print_stats(20)
    return {"total_seconds": total, "stages": stages, "top": out.getvalue()}


def _cumulative(stats, file: str, function: str) -> float:
    """Cumulative seconds of the clinrisk function `function` defined in `file`."""
    return sum(
        row[3]
        for (path, _, name), row in stats.stats.items()
        if name == function and path.endswith(f"clinrisk/{file}")
    )


# --- the benchmark ------------------------------------------------------------------------


def write_input(frame, spec, rows: int, path: Path, seed: int) -> Path:
    """The real data resampled to `rows` rows, without the target, as CSV or Parquet."""
    data = common.resample(frame, rows, seed, spec=spec).drop(columns=[spec.target.column])
    if path.suffix == ".parquet":
        data.to_parquet(path, index=False)
    else:
        data.to_csv(path, index=False)
    return path


def clinrisk_predict(
    home: Path, input_path: Path, chunk_rows: int, rows: int, *, cold: bool = False
) -> tuple[common.Measured, str]:
    """Run `clinrisk predict` as a user would, check it scored every row; also return its scoring path.

    `cold` empties the local champion cache first, so the champion comes from the registry
    through MLflow (as on the first run after a promotion); otherwise the run must find it cached.
    """
    cache = home / "serving-cache"
    if cold and cache.exists():
        shutil.rmtree(cache)
    output = input_path.with_name(f"{input_path.stem}.scored{input_path.suffix}")
    command = [
        str(common.VENV_BIN / "clinrisk"), "predict", "--input", str(input_path), "--output", str(output),
        "--chunk-rows", str(chunk_rows),
    ]  # fmt: skip
    result = common.check(common.measure(command, common.bench_env(home)), "clinrisk predict")
    output.unlink(missing_ok=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["rows_scored"] != rows:
        raise RuntimeError(f"clinrisk predict scored {report['rows_scored']} of {rows} rows of {input_path}")
    expected = "registry" if cold else "cache"
    if report.get("loaded_from", expected) != expected:
        raise RuntimeError(
            f"clinrisk predict loaded the champion from the {report['loaded_from']}, not the {expected}"
        )
    return result, report.get("scoring_path", "sklearn")


def mlflow_predict(home: Path, input_path: Path) -> common.Measured:
    """`mlflow models predict` on the same champion and file (local environment, CSV in, JSON out)."""
    output = input_path.with_name(f"{input_path.stem}.mlflow.json")
    command = [
        str(common.VENV_BIN / "mlflow"), "models", "predict", "-m", "models:/stroke@champion",
        "--env-manager", "local", "-i", str(input_path), "-t", input_path.suffix.lstrip("."),
        "-o", str(output),
    ]  # fmt: skip
    result = common.check(common.measure(command, common.bench_env(home)), "mlflow models predict")
    output.unlink(missing_ok=True)
    return result


def lean_available() -> bool:
    """Whether the web service's lean (ONNX) scorer exists in this checkout."""
    import importlib.util

    return importlib.util.find_spec("clinrisk.serving.onnx_scorer") is not None


def startup_steps(home: Path, tiny: Path) -> dict:
    """The cached start-up step by step, from `predict_startup.py` in a fresh interpreter."""
    command = [sys.executable, str(Path(__file__).with_name("predict_startup.py")), str(tiny)]
    result = common.check(common.measure(command, common.bench_env(home)), "predict_startup.py")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "process_seconds": result.seconds}


def in_fresh_process(home: Path, flag: str, *arguments: str) -> tuple[common.Measured, dict]:
    """Run one of this file's helpers in a new interpreter; return the measurement and its JSON."""
    command = [sys.executable, __file__, flag, *arguments]
    result = common.check(common.measure(command, common.bench_env(home)), flag)
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def measure_all(args: argparse.Namespace, home: Path) -> dict:
    """Every measurement of the batch benchmark, in one state directory."""
    spec = common.load_spec()
    frame = common.real_data(spec)
    suffix = f".{args.format}"
    print(f"writing {args.rows:,} and {args.small_rows:,} rows ...", flush=True)
    big = write_input(frame, spec, args.rows, home / f"big{suffix}", seed=1)
    small = write_input(frame, spec, args.small_rows, home / f"small{suffix}", seed=2)
    tiny = write_input(frame, spec, 1, home / f"tiny{suffix}", seed=3)
    out = {"file_mb": big.stat().st_size / 1e6}
    print("clinrisk predict ...", flush=True)
    out["tiny_cold"], _ = clinrisk_predict(home, tiny, args.chunk_rows, 1, cold=True)
    out["tiny"], _ = clinrisk_predict(home, tiny, args.chunk_rows, 1)
    out["big"], out["scoring_path"] = clinrisk_predict(home, big, args.chunk_rows, args.rows)
    out["big_cold"], _ = clinrisk_predict(home, big, args.chunk_rows, args.rows, cold=True)
    out["small"], _ = clinrisk_predict(home, small, args.chunk_rows, args.small_rows)
    out["startup_profile"] = startup_steps(home, tiny)
    if args.format == "csv":  # MLflow's CLI reads CSV or JSON only
        print("mlflow models predict ...", flush=True)
        out["mlflow"] = mlflow_predict(home, big)
    if args.parquet_too and args.format == "csv":
        parquet = write_input(frame, spec, args.rows, home / "big.parquet", seed=1)
        print("clinrisk predict, Parquet in and out ...", flush=True)
        out["parquet"], _ = clinrisk_predict(home, parquet, args.chunk_rows, args.rows)
    print("plain predict_proba ...", flush=True)
    out["plain"], out["plain_times"] = in_fresh_process(home, "--plain-only", str(big))
    if lean_available():
        print("lean ONNX scorer ...", flush=True)
        out["lean"], out["lean_times"] = in_fresh_process(home, "--lean-only", str(big))
    if args.profile:
        print("profiling score_file ...", flush=True)
        output = home / f"profiled{suffix}"
        _, out["profile"] = in_fresh_process(
            home,
            "--profile-only",
            str(small),
            "--profile-output",
            str(output),
            "--chunk-rows",
            str(args.chunk_rows),
        )
    return out


def rates(m: dict, rows: int) -> dict[str, float]:
    """Rows per second of each way of scoring the big file."""
    plain = m["plain_times"]
    steady = max(m["big"].seconds - m["tiny"].seconds, 1e-9)
    return {
        "ours_end": rows / m["big"].seconds,
        "ours_cold": rows / m["big_cold"].seconds,
        "plain_end": rows / m["plain"].seconds,
        "ours_steady": rows / steady,
        "steady_seconds": steady,
        "plain_predict": rows / plain["predict_seconds"],
        "plain_read_predict": rows / (plain["read_seconds"] + plain["predict_seconds"]),
        "lean_predict": rows / m["lean_times"]["predict_seconds"] if "lean_times" in m else float("nan"),
        "mlflow": rows / m["mlflow"].seconds if "mlflow" in m else float("nan"),
        "parquet": rows / m["parquet"].seconds if "parquet" in m else float("nan"),
    }


def table_rows(m: dict, r: dict, args: argparse.Namespace) -> list[list[str]]:
    plain, small = m["plain_times"], m["small"]
    rows = [
        ["`clinrisk predict`, end to end (start-up, read, validate, score, write), champion in the local "
         "cache (the alias checked in the registry)", f"{r['ours_end']:,.0f}",
         f"{m['big'].seconds:.1f}", f"{m['big'].peak_rss_mb:,.0f}"],
        ["`clinrisk predict`, end to end, champion loaded from the registry through MLflow (cache emptied "
         "first, as on the first run after a promotion)", f"{r['ours_cold']:,.0f}",
         f"{m['big_cold'].seconds:.1f}", f"{m['big_cold'].peak_rss_mb:,.0f}"],
        [f"`clinrisk predict` minus its fixed start-up ({m['tiny'].seconds:.1f} s on a 1-row file with the "
         f"champion cached, {m['tiny_cold'].seconds:.1f} s from the registry)",
         f"{r['ours_steady']:,.0f}", f"{r['steady_seconds']:.1f}", "-"],
        [f"`clinrisk predict` on {args.small_rows:,} rows (memory check)",
         f"{args.small_rows / small.seconds:,.0f}", f"{small.seconds:.1f}", f"{small.peak_rss_mb:,.0f}"],
        ["plain `predict_proba` on the in-memory DataFrame", f"{r['plain_predict']:,.0f}",
         f"{plain['predict_seconds']:.1f}", f"{m['plain'].peak_rss_mb:,.0f}"],
        ["plain: read the file + `predict_proba`", f"{r['plain_read_predict']:,.0f}",
         f"{plain['read_seconds'] + plain['predict_seconds']:.1f}", "(same process)"],
        ["plain, end to end (start-up, loading the champion through MLflow, read, `predict_proba`; "
         "writes nothing)", f"{r['plain_end']:,.0f}", f"{m['plain'].seconds:.1f}", "(same process)"],
    ]  # fmt: skip
    if "mlflow" in m:
        slower = r["ours_end"] / r["mlflow"]
        rows.append([f"`mlflow models predict --env-manager local` (ours is {slower:.1f}x faster)",
                     f"{r['mlflow']:,.0f}", f"{m['mlflow'].seconds:.1f}",
                     f"{m['mlflow'].peak_rss_mb:,.0f}"])  # fmt: skip
    if "parquet" in m:
        rows.append(["`clinrisk predict`, Parquet in and out, end to end", f"{r['parquet']:,.0f}",
                     f"{m['parquet'].seconds:.1f}", f"{m['parquet'].peak_rss_mb:,.0f}"])  # fmt: skip
    if "lean" in m:
        lean = m["lean_times"]
        checked = min(LEAN_CHECK_ROWS, args.rows)
        path = lean.get("path", "onnx")
        rows.append([f"the bundle's stored lean scorer ({path}) on the in-memory DataFrame "
                     f"({lean['build_seconds']:.1f} s to load; max abs diff from scikit-learn "
                     f"{lean['max_abs_diff']:.1e} on {checked:,} rows)", f"{r['lean_predict']:,.0f}",
                     f"{lean['predict_seconds']:.1f}", f"{m['lean'].peak_rss_mb:,.0f}"])  # fmt: skip
    return rows


def verdicts(m: dict, r: dict, args: argparse.Namespace) -> list[str]:
    """Throughput and memory targets: met, or missed by how much."""
    share = r["ours_steady"] / r["plain_predict"]
    small, big, plain = m["small"].peak_rss_mb, m["big"].peak_rss_mb, m["plain"].peak_rss_mb
    growth = big / small
    return [
        f"**Throughput target** (≥ {TARGET_SHARE:.0%} of plain `predict_proba`): `clinrisk predict` reaches "
        f"{share:.0%} of it without start-up ({r['ours_end'] / r['plain_predict']:.0%} end to end; "
        f"{r['ours_steady'] / r['plain_read_predict']:.0%} of plain read + `predict_proba`): "
        + ("met." if share >= TARGET_SHARE else f"missed by {TARGET_SHARE / share:.2f}x.")
        + lean_note(r),
        "",
        f"**Memory target** (bounded by the chunk size, not the file): peak RSS {small:,.0f} MB for "
        f"{args.small_rows:,} rows and {big:,.0f} MB for {args.rows:,} rows ({growth:.2f}x for "
        f"{args.rows / args.small_rows:.0f}x the rows); plain `predict_proba` needs {plain:,.0f} MB: "
        + ("met." if growth <= MEMORY_GROWTH_ALLOWED else "missed: memory grows with the file."),
        *mlflow_verdict(r),
        "",
        f"**Start-up share**: {m['tiny'].seconds:.1f} s of the {m['big'].seconds:.1f} s end to end "
        f"({m['tiny'].seconds / m['big'].seconds:.0%}) with the champion cached; "
        f"{m['tiny_cold'].seconds:.1f} s of {m['big_cold'].seconds:.1f} s "
        f"({m['tiny_cold'].seconds / m['big_cold'].seconds:.0%}) when it is loaded from the registry.",
    ]


def mlflow_verdict(r: dict) -> list[str]:
    """End to end against `mlflow models predict` on the same file, both including start-up."""
    if math.isnan(r["mlflow"]):
        reason = "its CLI reads CSV or JSON only, this run used another --format"
        return ["", f"**Against MLflow:** {common.not_measured(reason)}."]
    times, cold = r["ours_end"] / r["mlflow"], r["ours_cold"] / r["mlflow"]
    return [
        "",
        f"**Against MLflow** (≥ {MLFLOW_TARGET:.0f}x `mlflow models predict`, end to end, start-up "
        f"included in both): {times:.1f}x with the champion cached, "
        + ("met" if times >= MLFLOW_TARGET else f"missed by {MLFLOW_TARGET / times:.2f}x")
        + f"; {cold:.1f}x when it is first loaded from the registry, "
        + ("met." if cold >= MLFLOW_TARGET else f"missed by {MLFLOW_TARGET / cold:.2f}x."),
    ]


def lean_note(r: dict) -> str:
    """What the lean scorer alone achieves, when it was measured."""
    if math.isnan(r["lean_predict"]):
        return ""
    return (
        f" The lean ONNX scorer alone runs at {r['lean_predict'] / r['plain_predict']:.0%} of plain "
        "`predict_proba` on the same DataFrame."
    )


def render(m: dict, args: argparse.Namespace) -> str:
    """The markdown section: rows per second and peak memory of each way, ratios and verdicts."""
    r = rates(m, args.rows)
    lines = [
        "## Batch scoring: `clinrisk predict` vs plain `predict_proba` and `mlflow models predict`",
        "",
        common.run_stamp(),
        "",
        f"{args.rows:,} rows (the real data resampled, {args.format.upper()}, {m['file_mb']:.0f} MB), "
        f"champion trained by `clinrisk train`; `clinrisk predict --chunk-rows {args.chunk_rows:,}` "
        f"(scoring path it chose: {m['scoring_path']}). "
        "Each way runs in a fresh process; peak memory is its maximum resident set size (wait4).",
        "",
        common.markdown_table(["way", "rows/s", "seconds", "peak RSS (MB)"], table_rows(m, r, args)),
        "",
        *verdicts(m, r, args),
    ]
    if "startup_profile" in m:
        lines += ["", startup_text(m["startup_profile"])]
    if "profile" in m:
        lines += ["", profile_text(m["profile"], args.small_rows), "", per_row_note(m, args)]
    return "\n".join(lines)


def startup_text(profile: dict) -> str:
    """Where the start-up with a cached champion goes, step by step (one fresh process)."""
    steps = profile["steps"]
    rows = [[label, f"{seconds:.2f}"] for label, seconds in steps.items()]
    imported = "imported" if profile["mlflow_imported"] else "never imported"
    rows.append(["the interpreter's own start and exit (the rest of the process's time)",
                 f"{profile['process_seconds'] - sum(steps.values()):.2f}"])  # fmt: skip
    return "\n".join(
        [
            "Start-up with the champion cached, step by step in a fresh process "
            f"({profile['process_seconds']:.2f} s in all, measured by `benchmarks/predict_startup.py`; "
            f"MLflow {imported}):",
            "",
            common.markdown_table(["step", "seconds"], rows),
        ]
    )


def profile_text(profile: dict, scored_rows: int) -> str:
    """Where score_file's time goes, stage by stage, with cProfile's top functions folded away."""
    total = profile["total_seconds"]
    rows = [
        [label, f"{seconds:.1f}", f"{seconds / total:.0%}"] for label, seconds in profile["stages"].items()
    ]
    rest = total - sum(profile["stages"].values())
    rows.append(["other (copies, bookkeeping)", f"{rest:.1f}", f"{rest / total:.0%}"])
    return "\n".join(
        [
            f"Where the time goes: `score_file` on {scored_rows:,} rows under cProfile took {total:.1f} s "
            "(the profiler's overhead inflates Python-heavy stages):",
            "",
            common.markdown_table(["stage", "seconds", "share"], rows),
            "",
            "<details><summary>cProfile, top 20 by cumulative time</summary>",
            "",
            "```text",
            profile["top"].strip(),
            "```",
            "",
            "</details>",
        ]
    )


def per_row_note(m: dict, args: argparse.Namespace) -> str:
    """Model time per row in chunks (inside score_file) against one predict_proba on the whole frame."""
    stages = m["profile"]["stages"]
    chunked = next(s for label, s in stages.items() if label.startswith("score")) / args.small_rows
    whole = m["plain_times"]["predict_seconds"] / args.rows
    text = (
        f"The model itself costs {chunked * 1e6:.1f} µs a row inside `score_file` (chunks of "
        f"{args.chunk_rows:,}) against {whole * 1e6:.1f} µs a row for one `predict_proba` on the whole "
        f"frame (x{chunked / whole:.1f})."
    )
    if chunked / whole > 1.3:
        text += (
            " The gap is per-call overhead: scikit-learn's gradient boosting opens an OpenMP parallel "
            "region for every tree of every call, which costs most when other processes compete for the "
            f"cores (`OMP_NUM_THREADS` was {os.environ.get('OMP_NUM_THREADS', 'unset')})."
        )
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--small-rows", type=int, default=200_000, help="Second file size, for the memory check."
    )
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="Skip the cProfile run.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 100,000 rows, written under .work/.")
    parser.add_argument("--results", type=common.results_file, default=None, help="Results file to update.")
    common.add_home_argument(parser)
    parser.add_argument(
        "--no-parquet", dest="parquet_too", action="store_false", help="Skip the Parquet run."
    )
    parser.add_argument("--plain-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lean-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.small_rows, args.chunk_rows = 100_000, 20_000, 10_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.exit_on_sigterm()
    if args.plain_only:
        print(json.dumps(plain_predict_proba(args.plain_only)))
        return 0
    if args.lean_only:
        print(json.dumps(lean_scorer(args.lean_only)))
        return 0
    if args.profile_only:
        print(json.dumps(profile_score_file(args.profile_only, args.profile_output, args.chunk_rows)))
        return 0
    with common.work_dir("batch") as tmp:
        measured = measure_all(args, common.champion_home(args.home, Path(tmp)))
    common.save_raw("batch", measured)
    body = render(measured, args)
    print(body)
    common.write_results(common.results_path(args.results, args.quick), "batch", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
