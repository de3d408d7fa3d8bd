"""First-start training: the time `make up` and compose's `init` spend giving every model with a
spec its first champion, one after the other, at one thread (`OMP_NUM_THREADS=1`, `CLINRISK_THREADS=1`).

Two measures, each in a fresh state directory: `clinrisk train --model NAME` for each spec in its
own process (one model's cost, with the process start), and the whole first start as the stack
runs it, `clinrisk.stack.bootstrap.ensure_champions` in one process (every model, imports paid once).

    .venv/bin/python benchmarks/first_start.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

ONE_THREAD = {"OMP_NUM_THREADS": "1", "CLINRISK_THREADS": "1"}
FIRST_START = "from clinrisk.stack.bootstrap import ensure_champions; print(ensure_champions(train=True))"


def model_names() -> list[str]:
    from clinrisk.flows.deployments import model_names

    return model_names(common.REPO / "models")


def train_each(names: list[str]) -> dict[str, common.Measured]:
    """`clinrisk train --model NAME` for every model, each in a process and a state directory of its own."""
    runs = {}
    for name in names:
        with common.work_dir(f"first-{name}") as tmp:
            command = [str(common.VENV_BIN / "clinrisk"), "train", "--model", name]
            measured = common.measure(command, common.bench_env(Path(tmp), **ONE_THREAD))
            runs[name] = common.check(measured, f"clinrisk train --model {name}")
    return runs


def first_start() -> common.Measured:
    """Every model's first champion in one process and one state directory, as the stack trains them."""
    with common.work_dir("first-start") as tmp:
        command = [sys.executable, "-c", FIRST_START]
        return common.check(common.measure(command, common.bench_env(Path(tmp), **ONE_THREAD)), "first start")


def cells(measured: common.Measured) -> list[str]:
    return [f"{measured.seconds:.1f}", f"{measured.peak_rss_mb:,.0f}"]


def render(runs: dict[str, common.Measured], whole: common.Measured) -> str:
    rows = [[f"`clinrisk train --model {name}`", *cells(m)] for name, m in runs.items()]
    rows.append(["first start: every model in one process", *cells(whole)])
    return "\n".join(
        [
            "## First start: a champion for every model",
            "",
            common.run_stamp(),
            "",
            "Each model's shipped spec on its real data file (every candidate, threshold, refit, holdout, "
            "calibration, signed bundle, registration and gate) at one thread, in a fresh state directory; "
            "then every model's first champion in one process, as `make up` and compose's `init` train them.",
            "",
            common.markdown_table(["what", "wall (s)", "peak RSS (MB)"], rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Only the whole first start.")
    parser.add_argument("--results", type=common.results_file, default=None, help="Results file to update.")
    args = parser.parse_args(argv)
    common.exit_on_sigterm()
    runs = {} if args.quick else train_each(model_names())
    body = render(runs, first_start())
    print(body)
    common.write_results(common.results_path(args.results, args.quick), "first-start", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
