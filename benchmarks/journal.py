"""The prediction journal's cost on the request path: `submit()` with and without the journal.

A request hands its rows to the prediction-log writer with `submit()`; with the journal it also
appends them to a local file first (one write system call, no fsync), so that a killed worker
loses no answered prediction. This measures that call in the request thread while the writer
thread runs as in production (SQLite log, 0.25 s cycles, segments rotated and deleted), for
1, 10 and 100 rows per request, in interleaved rounds.

    .venv/bin/python benchmarks/journal.py            # ~2 min on 2 cores
    .venv/bin/python benchmarks/journal.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
from clinrisk.serving.logwriter import PredictionLogWriter

BATCHES = (1, 10, 100)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Few calls: a smoke run.")
    parser.add_argument("--calls", type=int, default=2000, help="submit() calls per round and variant.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=common.results_file, default=None)
    return parser.parse_args(argv)


def prediction_rows(patients: list[dict], count: int) -> list[dict]:
    """Rows shaped as `clinrisk.web.api.score` makes them."""
    now = datetime.now(UTC)
    return [
        {
            "prediction_id": str(uuid.uuid4()),
            "created_at": now,
            "model_name": "stroke",
            "model_version": "1",
            "features": patients[i % len(patients)],
            "probability": 0.123456789,
            "prediction": 0,
        }
        for i in range(count)
    ]


def time_submits(writer: PredictionLogWriter, batches: list[list[dict]]) -> np.ndarray:
    """Microseconds per submit() call, measured one by one."""
    spent = np.empty(len(batches))
    for i, rows in enumerate(batches):
        start = time.perf_counter_ns()
        writer.submit(rows)
        spent[i] = (time.perf_counter_ns() - start) / 1000
    return spent


def one_round(root: Path, journal: bool, batches: list[list[dict]]) -> np.ndarray:
    home = root / f"{'with' if journal else 'without'}-{uuid.uuid4().hex[:6]}"
    writer = PredictionLogWriter(
        f"sqlite:///{home / 'log.db'}", journal_dir=home / "journal" if journal else None
    )
    home.mkdir(parents=True)
    writer.engine  # noqa: B018 - open the database before timing
    writer.start()
    try:
        return time_submits(writer, batches)
    finally:
        writer.close()


def measure(args: argparse.Namespace, root: Path) -> dict:
    patients = common.real_data().drop(columns=["id", "stroke"]).head(1000).to_dict("records")
    calls = 200 if args.quick else args.calls
    rounds = 1 if args.quick else args.rounds
    results: dict = {}
    for size in BATCHES:
        batches = [prediction_rows(patients, size) for _ in range(calls)]
        spent: dict[str, list[np.ndarray]] = {"without": [], "with": []}
        for _ in range(rounds):  # interleaved, so machine load hits both variants alike
            spent["without"].append(one_round(root, False, batches))
            spent["with"].append(one_round(root, True, batches))
        results[size] = {k: np.concatenate(v) for k, v in spent.items()}
    return results


def render(results: dict, args: argparse.Namespace) -> str:
    rows = []
    for size, spent in results.items():
        without, with_journal = spent["without"], spent["with"]
        rows.append(
            [
                size,
                len(with_journal),
                f"{np.median(without):.1f}",
                f"{np.median(with_journal):.1f}",
                f"{np.median(with_journal) - np.median(without):.1f}",
                f"{np.percentile(without, 99):.1f}",
                f"{np.percentile(with_journal, 99):.1f}",
            ]
        )
    table = common.markdown_table(
        [
            "rows per request",
            "calls",
            "submit p50 without journal (µs)",
            "with journal (µs)",
            "journal cost p50 (µs)",
            "p99 without (µs)",
            "p99 with (µs)",
        ],
        rows,
    )
    return (
        "## Prediction journal: cost per request\n\n"
        f"{common.run_stamp()}\n\n"
        "Time of `PredictionLogWriter.submit()` in the request thread, with the writer thread running "
        "as in production (SQLite log, segments rotated every 0.25 s cycle and deleted once written). "
        "The journal serialises the rows with orjson and appends them in one write, without fsync. "
        "Rounds of each variant are interleaved.\n\n"
        f"{table}\n\n"
        "The write system call releases the GIL; while the writer thread is inserting a large batch "
        "the request thread can wait for it to come back, which is what the p99 of large requests "
        "shows. Without the journal the call is too short to be caught by such a switch.\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.exit_on_sigterm()
    with common.work_dir("journal") as tmp:
        results = measure(args, Path(tmp))
    common.save_raw("journal", results)
    body = render(results, args)
    print(body)
    common.write_results(common.results_path(args.results, args.quick), "journal", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
