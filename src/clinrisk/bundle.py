"""A model version as data: an ONNX graph and a signed JSON of threshold, spec and facts.

At registration, `build_bundle` converts the fitted pipeline to ONNX once, checks it against
scikit-learn on the training snapshot (max |Δ probability| ≤ `TOLERANCE`) and signs the JSON,
which carries the ONNX file's SHA-256. The service, `clinrisk predict` and the batch flow load
only this bundle through `read_bundle`: nothing is unpickled, so a tampered registry or cache
can at worst be refused, never run code. A model ONNX cannot express is stored as refused,
with the reason, and is never served.

The calibration map (Platt's `a`, `b`) travels in the signed JSON and is applied after the
ONNX score. For explanations only, the fitted pipeline is also stored as `pipeline.skops`
(skops.io: numpy arrays and JSON, loaded with an explicit list of trusted types, never
unpickled); its SHA-256 is signed too, and it is read only when an explanation is asked for.

A promotion record (model, version, run id, who, why, when), signed with the same key,
marks the versions the gate or a person promoted; the service serves no other.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinrisk import signing
from clinrisk.errors import ClinriskError
from clinrisk.model import Decisions, RiskModel
from clinrisk.spec import ModelSpec, spec_from_yaml

ARTIFACT_PATH = "scorer"
ONNX_FILE = "model.onnx"
META_FILE = "scorer.json"
SIGNATURE_FILE = "scorer.sig"
PIPELINE_FILE = "pipeline.skops"
LEAN_FILE = "lean.onnx"  # the TreeEnsemble node of a gradient-boosting lean scorer
# The pipeline is logged apart, under `explainer/`, so that scoring never downloads it.
EXPLAINER_PATH = "explainer"
FILES = (ONNX_FILE, META_FILE, SIGNATURE_FILE, LEAN_FILE)
# The only non-builtin types skops may build when it reads a pipeline back (exact names; skops
# trusts scikit-learn's estimators and numpy arrays by default).
SKOPS_TRUSTED = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils._bunch.Bunch",
]
FORMAT = 1
TOLERANCE = 1e-5
BUNDLE_PURPOSE = "clinrisk-scorer-v1"
PROMOTION_PURPOSE = "clinrisk-promotion-v1"
PROMOTION_TAG = "clinrisk.promotion"
PROMOTION_SIGNATURE_TAG = "clinrisk.promotion.sig"
INFO_KEYS = (
    "model",
    "candidate",
    "seed",
    "trained_at",
    "data_sha256",
    "holdout_metrics",
    "run_id",
    "transformed_means",  # where linear explanations start from (the average training patient)
)


log = logging.getLogger(__name__)

# What the lean scorer covers (clinrisk.serving.numpy_scorer); other models keep the ONNX graph.
LEAN_SCOPE = "logistic regression and gradient boosting after impute + scale + one-hot"
# How bundles signed before this wording named a model the lean scorer does not cover.
_OLD_NOT_COVERED = "no lean scorer: NotImplementedError: "
_OLD_FAILED = "no lean scorer: "


class BundleError(ClinriskError):
    """A bundle is missing, unsigned, tampered with, or holds a model ONNX cannot express."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify_onnx(model, verification: pd.DataFrame) -> tuple[bytes, float]:
    """ONNX bytes and the largest |Δ| from scikit-learn over every row.

    Δ is of calibrated probabilities for a classification, of predicted values (target units)
    for a regression (which has no calibration: `calibrate` is the identity).
    """
    from clinrisk.serving.onnx_scorer import OnnxScorer, to_onnx
    from clinrisk.serving.scorer import CalibratedScorer, SklearnScorer, max_abs_difference

    onnx = to_onnx(model.pipeline, model.spec)
    lean = CalibratedScorer(OnnxScorer(onnx, model.spec), model)
    diff = max_abs_difference(lean, SklearnScorer(model), verification, model.spec)
    return onnx, diff


def _lean_scorer(model, verification: pd.DataFrame) -> tuple[dict[str, Any], bytes | None]:
    """The lean scorer's JSON section (and tree graph) when it matches scikit-learn within TOLERANCE.

    The section says why there is none otherwise; a bundle without one is served by its ONNX graph.
    """
    from clinrisk.serving.numpy_scorer import LeanScorer, lean_parameters
    from clinrisk.serving.scorer import CalibratedScorer, SklearnScorer, max_abs_difference

    try:
        parameters, graph = lean_parameters(model.pipeline)
    except NotImplementedError as exc:  # expected: a model the lean scorer does not cover
        return {"servable": False, "reason": _not_covered(str(exc)[:200])}, None
    try:
        lean = CalibratedScorer(LeanScorer(parameters, graph), model)
        diff = max_abs_difference(lean, SklearnScorer(model), verification, model.spec)
    except Exception as exc:  # a real fault, e.g. onnxruntime refusing the tree graph
        log.warning(
            "the lean scorer of %s failed its check, the ONNX graph serves it: %s", model.spec.name, exc
        )
        return {
            "servable": False,
            "reason": f"the lean scorer failed: {type(exc).__name__}: {str(exc)[:200]}",
        }, None
    checked = {"max_abs_diff": diff, "rows": len(verification), "tolerance": TOLERANCE}
    if not diff <= TOLERANCE:
        reason = f"the lean scorer differs from scikit-learn by {diff:.3g} > {TOLERANCE:g}"
        return {"servable": False, "reason": reason, "verification": checked}, None
    section = {"servable": True, "parameters": parameters, "verification": checked}
    if graph is not None:
        section["graph_sha256"] = _sha256(graph)
    return section, graph


def _not_covered(detail: str) -> str:
    return f"the lean scorer covers only {LEAN_SCOPE} ({detail})"


def _lean_reason(stored: str) -> str:
    """Why a bundle has no lean scorer, in today's words also for bundles signed before them."""
    if stored.startswith(_OLD_NOT_COVERED):
        return _not_covered(stored.removeprefix(_OLD_NOT_COVERED))
    if stored.startswith(_OLD_FAILED):
        return f"the lean scorer failed: {stored.removeprefix(_OLD_FAILED)}"
    return stored


def _pipeline_bytes(model) -> bytes:
    import skops.io

    return skops.io.dumps(model.pipeline)


def build_bundle(model, verification: pd.DataFrame, run_id: str, key: bytes) -> dict[str, bytes]:
    """The bundle's files (name -> bytes) for a fitted RiskModel, verified once on `verification`.

    `verification` is the training snapshot (validated rows, target optional). A model that
    does not convert, or differs by more than TOLERANCE, gets a signed refusal and no ONNX.
    """
    onnx, diff, reason = b"", None, ""
    pipeline = _pipeline_bytes(model)
    try:
        onnx, diff = _verify_onnx(model, verification)
    except Exception as exc:  # skl2onnx and onnxruntime raise many types for unsupported models
        reason = f"ONNX conversion failed: {type(exc).__name__}: {str(exc)[:200]}"
    if diff is not None and not diff <= TOLERANCE:
        reason = f"ONNX differs from scikit-learn by {diff:.3g} > {TOLERANCE:g} on {len(verification)} rows"
    lean, lean_graph = _lean_scorer(model, verification) if not reason else ({}, None)
    meta = {
        "format": FORMAT,
        "name": model.spec.name,
        "run_id": run_id,
        "threshold": None if model.threshold is None else float(model.threshold),  # None: a regression
        "calibration": model.calibration.as_dict() if getattr(model, "calibration", None) else None,
        "spec_yaml": model.spec_yaml,
        "info": {k: model.info[k] for k in INFO_KEYS if k in model.info} | {"run_id": run_id},
        "servable": not reason,
        "reason": reason or f"verified against scikit-learn on {len(verification)} rows",
        "onnx_sha256": _sha256(onnx) if not reason else None,
        "pipeline_sha256": _sha256(pipeline),
        "verification": {"max_abs_diff": diff, "rows": len(verification), "tolerance": TOLERANCE},
        "lean": lean,
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta_bytes = json.dumps(meta, indent=2, default=float).encode()
    files = {META_FILE: meta_bytes, SIGNATURE_FILE: signing.sign(key, BUNDLE_PURPOSE, meta_bytes).encode()}
    if not reason:
        files[ONNX_FILE] = onnx
    if lean_graph is not None:
        files[LEAN_FILE] = lean_graph
    files[PIPELINE_FILE] = pipeline
    return files


def artifact_parts(files: Mapping[str, bytes]) -> dict[str, dict[str, bytes]]:
    """The bundle's files by the run artifact path they are logged under."""
    scorer = {name: data for name, data in files.items() if name != PIPELINE_FILE}
    explainer = {name: data for name, data in files.items() if name == PIPELINE_FILE}
    return {ARTIFACT_PATH: scorer, **({EXPLAINER_PATH: explainer} if explainer else {})}


def write_files(directory: Path, files: Mapping[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def read_files(directory: Path) -> dict[str, bytes]:
    """The bundle files present in `directory` (symlinks are not followed)."""
    files = {}
    for name in FILES:
        path = directory / name
        if path.is_file() and not path.is_symlink():
            files[name] = path.read_bytes()
    return files


def verified_meta(files: Mapping[str, bytes], key: bytes, *, name: str, run_id: str | None) -> dict[str, Any]:
    """The bundle's JSON once its signature, model name and run id check out; else BundleError."""
    if META_FILE not in files or SIGNATURE_FILE not in files:
        raise BundleError("it has no signed scorer bundle (run `clinrisk models upgrade`)")
    if not signing.verify(
        key, BUNDLE_PURPOSE, files[META_FILE], files[SIGNATURE_FILE].decode("ascii", "replace")
    ):
        raise BundleError("its scorer bundle's signature does not verify")
    meta = json.loads(files[META_FILE])
    if meta.get("servable") and _sha256(files.get(ONNX_FILE, b"")) != meta.get("onnx_sha256"):
        raise BundleError("its ONNX file does not match the signed hash")
    lean = meta.get("lean") or {}
    if lean.get("graph_sha256") and _sha256(files.get(LEAN_FILE, b"")) != lean["graph_sha256"]:
        raise BundleError("its lean scorer's graph does not match the signed hash")
    if meta.get("name") != name or (run_id is not None and meta.get("run_id") != run_id):
        raise BundleError("its scorer bundle was signed for another model or run")
    if not meta.get("servable"):
        raise BundleError(f"ONNX cannot express this model, so it is not served: {meta.get('reason')}")
    return meta


def read_bundle(
    files: Mapping[str, bytes], key: bytes, *, name: str, version: str, run_id: str | None = None
) -> ServedModel:
    """A ServedModel from verified bundle files; raises BundleError saying why not."""
    meta = verified_meta(files, key, name=name, run_id=run_id)
    return ServedModel(files[ONNX_FILE], meta, version, dict(files))


class ServedModel(Decisions):
    """What serving and batch scoring hold: ONNX scorer, threshold, spec and facts, no pickle.

    It answers like `RiskModel` where scoring needs it (`spec`, `threshold`, `info`,
    `predict_proba`, `decide`, `predict`).
    """

    def __init__(self, onnx: bytes, meta: dict[str, Any], version: str, files: Mapping[str, bytes]):
        self.onnx = onnx
        self.meta = meta
        self.threshold = None if meta.get("threshold") is None else float(meta["threshold"])
        self.info = {**meta.get("info", {}), "version": str(version)}
        self.files = dict(files)
        self.promotion: dict[str, str] = {}
        # Fetches `pipeline.skops` when an explanation is first asked for (set by the registry).
        self.pipeline_loader: Callable[[], bytes | None] | None = None

    @cached_property
    def spec(self) -> ModelSpec:
        return spec_from_yaml(self.meta["spec_yaml"])

    @cached_property
    def scorer(self):
        """The lean scorer when the bundle carries a verified one, else the full ONNX graph, then
        the signed calibration map. Bundles signed before lean scorers existed use ONNX."""
        from clinrisk.serving.scorer import CalibratedScorer

        lean = self.meta.get("lean") or {}
        if lean.get("servable"):
            from clinrisk.serving.numpy_scorer import LeanScorer

            return CalibratedScorer(LeanScorer(lean["parameters"], self.files.get(LEAN_FILE)), self)
        from clinrisk.serving.onnx_scorer import OnnxScorer

        return CalibratedScorer(OnnxScorer(self.onnx, self.spec), self)

    @property
    def verification(self) -> dict[str, Any]:
        """The check at registration of the scorer in use (lean, else the ONNX graph), with why."""
        lean = self.meta.get("lean") or {}
        onnx_reason = self.meta.get("reason", "")
        if lean.get("servable"):
            return {**lean["verification"], "reason": f"lean scorer {onnx_reason}"}
        why_not = (
            f"; it serves this model because {_lean_reason(lean['reason'])}" if lean.get("reason") else ""
        )
        return {**self.meta.get("verification", {}), "reason": f"ONNX graph {onnx_reason}{why_not}"}

    @cached_property
    def calibration(self):
        from clinrisk.calibration import PlattCalibration

        found = self.meta.get("calibration")
        return PlattCalibration(**found) if found else None

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated risk from the ONNX graph's raw score (identity without a calibration)."""
        raw = np.asarray(raw, dtype=np.float64)
        return raw if self.calibration is None else self.calibration.apply(raw)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities (for a regression: the predicted values, see `scores`)."""
        from clinrisk.serving.scorer import score_frame

        return score_frame(self.scorer, features, self.spec)

    def predict_value(self, features: pd.DataFrame) -> np.ndarray:
        """A regression's predicted outcome for each row, in the target's units."""
        return self.predict_proba(features)

    def scores(self, features: pd.DataFrame) -> np.ndarray:
        """What the ONNX scorer returns: the probability, or the predicted value of a regression."""
        return self.predict_proba(features)

    @cached_property
    def explainable(self):
        """The fitted pipeline as a RiskModel, read from the signed `pipeline.skops` (for explanations).

        Raises BundleError when the bundle has no pipeline (registered before explanations) or
        its bytes do not match the signed hash.
        """
        import skops.io

        data = self.files.get(PIPELINE_FILE)
        if data is None and self.pipeline_loader is not None:
            data = self.pipeline_loader()
        if data is None or _sha256(data) != self.meta.get("pipeline_sha256"):
            raise BundleError("this version's bundle carries no verified pipeline to explain with")
        pipeline = skops.io.loads(data, trusted=SKOPS_TRUSTED)
        return RiskModel(pipeline, self.threshold, self.meta["spec_yaml"], dict(self.info), self.calibration)


def promotion_record(
    key: bytes, *, name: str, version: str, run_id: str, by: str, how: str, reason: str
) -> dict[str, str]:
    """The two tags that mark `version` as promoted (`how`: gate, manual, upgrade)."""
    record = json.dumps(
        {
            "name": name,
            "version": str(version),
            "run_id": run_id,
            "by": by,
            "how": how,
            "reason": reason,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        sort_keys=True,
    )
    return {
        PROMOTION_TAG: record,
        PROMOTION_SIGNATURE_TAG: signing.sign(key, PROMOTION_PURPOSE, record.encode()),
    }


def verify_promotion(
    tags: Mapping[str, str], key: bytes, *, name: str, version: str, run_id: str
) -> dict[str, Any]:
    """The signed promotion record of a version; BundleError when it is missing or forged."""
    record, signature = tags.get(PROMOTION_TAG), tags.get(PROMOTION_SIGNATURE_TAG)
    if not record or not signature:
        raise BundleError(
            f"version {version} has no signed promotion record"
            " (promote it with the gate or `clinrisk promote`)"
        )
    if not signing.verify(key, PROMOTION_PURPOSE, record.encode(), signature):
        raise BundleError(f"the promotion record of version {version} does not verify")
    facts = json.loads(record)
    if (facts.get("name"), facts.get("version"), facts.get("run_id")) != (name, str(version), run_id):
        raise BundleError(f"the promotion record of version {version} names another version")
    return facts
