"""Write scikit-learn's bundled diabetes-progression data to data/raw/ once, as a CSV.

Source: Efron, Hastie, Johnstone & Tibshirani (2004), "Least Angle Regression", Annals of
Statistics 32(2), shipped with scikit-learn as `sklearn.datasets.load_diabetes` (no download).
442 patients, 10 baseline measurements in their original units (`scaled=False`: age in years,
sex coded 1/2, BMI, mean blood pressure, six blood serum measurements s1-s6) and the target,
a quantitative measure of disease progression one year after baseline.

Raw data is immutable: this refuses to overwrite an existing file. Its sha256 is recorded in
models/diabetes_progression.yaml and checked whenever the model trains.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn.datasets import load_diabetes

TARGET = Path(__file__).resolve().parent / "raw" / "diabetes-progression.csv"


def main() -> int:
    if TARGET.exists():
        print(f"{TARGET} exists; raw data is never rewritten", file=sys.stderr)
        return 1
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    frame.to_csv(TARGET, index=False, lineterminator="\n")
    print(TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
