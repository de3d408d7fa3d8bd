"""`clinrisk predict`'s start-up with a cached champion, step by step, in a fresh interpreter.

Run by `batch.py` (which imports pandas itself, so it cannot time the imports); prints one
JSON line: seconds per step, and whether MLflow was imported. Environment as `clinrisk`'s.

    .venv/bin/python benchmarks/predict_startup.py FILE.csv   # after one `clinrisk predict`
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def startup_steps(input_path: Path) -> dict:
    """Seconds of each step of the cached start-up, as `clinrisk predict` runs them."""
    steps: dict[str, float] = {}
    started = STARTED

    def lap(label: str) -> None:
        nonlocal started
        now = time.perf_counter()
        steps[label] = now - started
        started = now

    from clinrisk import cli, commands, predict  # noqa: F401  (what the command imports)

    lap("import the CLI, pandas, pyarrow and the batch scorer")
    from clinrisk import registry, signing
    from clinrisk.serving import cache
    from clinrisk.settings import load_settings

    settings = load_settings()
    lap("load the settings")
    target = registry.alias_target(settings, "stroke", registry.CHAMPION)
    lap("ask the registry which version is the champion (no MLflow import)")
    served = cache.load(cache.cache_dir(settings, "stroke"), signing.load_key(settings), "stroke")
    if served is None or target is None:
        raise SystemExit("no cached champion, or no cheap alias read: run `clinrisk predict` once first")
    lap("read and verify the cached bundle (signature, hashes, promotion record)")
    scorer = served.scorer
    lap("build the lean scorer (onnxruntime session)")
    output = input_path.with_name(f"{input_path.stem}.startup.csv")
    predict.score_file(served, served.info["version"], input_path, output, progress=False)
    output.unlink(missing_ok=True)
    lap("score the 1-row file (read, validate, score, write)")
    return {"steps": steps, "path": scorer.path, "mlflow_imported": "mlflow" in sys.modules}


if __name__ == "__main__":
    print(json.dumps(startup_steps(Path(sys.argv[1]))))
