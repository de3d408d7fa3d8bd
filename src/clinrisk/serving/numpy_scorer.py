"""The leanest scoring path: preprocessing in numpy, then the model's own arithmetic.

An onnxruntime run of the whole pipeline costs about 1 ms per call, almost all of it fixed
overhead (string inputs, one-hot and imputer nodes), where the model's arithmetic takes
microseconds. Here the preprocessing (median imputation, standard scaling, one-hot encoding
with unknown values as all zeros) is numpy over a dense float64 matrix, exactly as
scikit-learn computes it (StandardScaler subtracts then divides in float64), and then:

- logistic regression: `expit(intercept + X · coef)` in numpy (agrees to rounding, ≈1e-16);
- gradient-boosted trees: one ai.onnx.ml TreeEnsemble node with double splits over X (about
  30 µs a call), plus the baseline and the sigmoid in numpy (bit-identical in our checks).

The parameters are read from the fitted scikit-learn objects once, at registration
(`lean_parameters`), stored in the signed bundle and checked there against scikit-learn
(`clinrisk.bundle`). Any other pipeline shape raises NotImplementedError and keeps the
full ONNX graph.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

LINEAR, TREES = "numpy", "tree-ensemble"
# Below this many rows, a dict lookup per value beats building a pandas index.
SMALL_BATCH = 64
TREES_OUTPUT = "raw"


def _numeric_block(transformer, columns: list[str]) -> dict[str, Any]:
    """fill, mean and scale of a Pipeline(SimpleImputer, StandardScaler) over `columns`."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in transformer.steps] if isinstance(transformer, Pipeline) else []
    if len(steps) != 2 or not isinstance(steps[0], SimpleImputer) or not isinstance(steps[1], StandardScaler):
        raise NotImplementedError(f"numeric block {type(transformer).__name__} is not impute + scale")
    imputer, scaler = steps
    nan_missing = isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)
    if imputer.add_indicator or not nan_missing:
        raise NotImplementedError("only NaN imputation without indicator columns is supported")
    width = len(columns)
    mean = scaler.mean_ if scaler.with_mean else np.zeros(width)
    scale = scaler.scale_ if scaler.with_std else np.ones(width)
    return {
        "columns": list(columns),
        "fill": np.asarray(imputer.statistics_, dtype=np.float64).tolist(),
        "mean": np.asarray(mean, dtype=np.float64).tolist(),
        "scale": np.asarray(scale, dtype=np.float64).tolist(),
    }


def _categorical_block(transformer, columns: list[str]) -> dict[str, Any]:
    """The categories of a dense OneHotEncoder that ignores unknown values, per column."""
    from sklearn.preprocessing import OneHotEncoder

    if not isinstance(transformer, OneHotEncoder) or transformer.drop is not None:
        raise NotImplementedError(f"categorical block {type(transformer).__name__} is not a plain one-hot")
    if transformer.handle_unknown != "ignore":
        raise NotImplementedError("only handle_unknown='ignore' is supported")
    if any(not all(isinstance(c, str) for c in found) for found in transformer.categories_):
        raise NotImplementedError("only string categories are supported")
    return {"columns": list(columns), "categories": [list(found) for found in transformer.categories_]}


def preprocess_parameters(preprocess) -> dict[str, Any]:
    """The numeric then categorical blocks of the spec's ColumnTransformer (see features.py)."""
    from sklearn.compose import ColumnTransformer

    if not isinstance(preprocess, ColumnTransformer):
        raise NotImplementedError("the first step is not a ColumnTransformer")
    blocks = [
        (name, t, list(cols)) for name, t, cols in preprocess.transformers_ if t != "drop" and len(cols)
    ]
    if [name for name, _, _ in blocks] != ["numeric", "categorical"]:
        raise NotImplementedError(f"unexpected preprocessing blocks {[name for name, _, _ in blocks]}")
    (_, numeric, numeric_columns), (_, categorical, categorical_columns) = blocks
    return {
        "numeric": _numeric_block(numeric, numeric_columns),
        "categorical": _categorical_block(categorical, categorical_columns),
    }


def _trees_graph(classifier, width: int) -> bytes:
    """One TreeEnsemble node (double splits, opset ai.onnx.ml 5) over a [N, width] double input."""
    from onnx import TensorProto, helper

    from clinrisk.serving.onnx_scorer import ML_OPSET_WITH_TREE_ENSEMBLE, _tree_ensemble_attributes

    node = helper.make_node(
        "TreeEnsemble", ["X"], [TREES_OUTPUT], domain="ai.onnx.ml", **_tree_ensemble_attributes(classifier)
    )
    graph = helper.make_graph(
        [node],
        "trees",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, width])],
        [helper.make_tensor_value_info(TREES_OUTPUT, TensorProto.DOUBLE, [None, 1])],
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", ML_OPSET_WITH_TREE_ENSEMBLE)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model.SerializeToString()


def lean_parameters(pipeline) -> tuple[dict[str, Any], bytes | None]:
    """JSON-ready parameters of the pipeline, and the TreeEnsemble graph for gradient boosting.

    Raises NotImplementedError for any other shape (another estimator, a multi-class model, an
    unexpected preprocessing step): those keep the full ONNX graph.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if len(pipeline.steps) != 2:
        raise NotImplementedError("the pipeline is not preprocess + classifier")
    preprocess = preprocess_parameters(pipeline.steps[0][1])
    classifier = pipeline.steps[-1][1]
    width = len(preprocess["numeric"]["columns"]) + sum(
        len(c) for c in preprocess["categorical"]["categories"]
    )
    if isinstance(classifier, LogisticRegression) and classifier.coef_.shape == (1, width):
        model = {"coef": classifier.coef_[0].tolist(), "intercept": float(classifier.intercept_[0])}
        return {"kind": LINEAR, "preprocess": preprocess, **model}, None
    if isinstance(classifier, HistGradientBoostingClassifier) and classifier.n_trees_per_iteration_ == 1:
        baseline = float(np.asarray(classifier._baseline_prediction).ravel()[0])
        return {"kind": TREES, "preprocess": preprocess, "baseline": baseline}, _trees_graph(
            classifier, width
        )
    raise NotImplementedError(f"{type(classifier).__name__} has no lean path")


class Preprocessor:
    """Column arrays -> the dense float64 matrix scikit-learn's preprocessing step produces."""

    def __init__(self, parameters: dict[str, Any]):
        numeric, categorical = parameters["numeric"], parameters["categorical"]
        self.numeric = list(numeric["columns"])
        self.fill = np.asarray(numeric["fill"], dtype=np.float64)
        self.mean = np.asarray(numeric["mean"], dtype=np.float64)
        self.scale = np.asarray(numeric["scale"], dtype=np.float64)
        self.categorical = []  # (column, {category: output position}, pandas index, first position)
        position = len(self.numeric)
        for name, categories in zip(categorical["columns"], categorical["categories"], strict=True):
            lookup = {category: position + k for k, category in enumerate(categories)}
            self.categorical.append((name, lookup, pd.Index(categories, dtype=object), position))
            position += len(categories)
        self.width = position
        # The same parameters as plain floats, for one record at a time (`row`).
        self._numeric_steps = list(
            zip(self.numeric, self.fill.tolist(), self.mean.tolist(), self.scale.tolist(), strict=True)
        )

    def row(self, record: Mapping[str, Any]) -> list[float]:
        """One validated record (feature name -> value, None when missing) as a row of `matrix`.

        The same arithmetic as `matrix`, in Python floats: for a single record, a dozen numpy
        calls on one-element arrays cost more than the values themselves.
        """
        out = [0.0] * self.width
        for position, (name, fill, mean, scale) in enumerate(self._numeric_steps):
            value = record.get(name)
            value = fill if value is None or value != value else float(value)  # NaN != NaN
            out[position] = (value - mean) / scale
        for name, lookup, _, _ in self.categorical:
            value = record.get(name)
            position = lookup.get("" if value is None else value)
            if position is not None:
                out[position] = 1.0
        return out

    def matrix(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """[rows, width] float64: imputed and scaled numbers, then one-hot categories."""
        rows = len(columns[self.numeric[0]]) if self.numeric else len(columns[self.categorical[0][0]])
        out = np.zeros((rows, self.width), dtype=np.float64)
        if self.numeric:
            values = np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in self.numeric])
            values = np.where(np.isnan(values), self.fill, values)
            out[:, : len(self.numeric)] = (values - self.mean) / self.scale
        for name, lookup, index, first in self.categorical:
            self._one_hot(out, columns[name], lookup, index, first)
        return out

    @staticmethod
    def _one_hot(out: np.ndarray, values, lookup: dict, index: pd.Index, first: int) -> None:
        if len(values) < SMALL_BATCH:
            for row, value in enumerate(values):
                position = lookup.get(value)
                if position is not None:
                    out[row, position] = 1.0
            return
        found = index.get_indexer(np.asarray(values, dtype=object))  # -1: unknown, left all zero
        rows = np.flatnonzero(found >= 0)
        out[rows, first + found[rows]] = 1.0


class LeanScorer:
    """Raw probabilities from column arrays: numpy preprocessing, then a linear or tree model."""

    def __init__(self, parameters: dict[str, Any], trees_graph: bytes | None = None):
        self.path = parameters["kind"]
        self._preprocess = Preprocessor(parameters["preprocess"])
        if self.path == LINEAR:
            self._coef = np.asarray(parameters["coef"], dtype=np.float64)
            self._coef_list = self._coef.tolist()
            self._offset = float(parameters["intercept"])
            self._session = None
        else:
            self._offset = float(parameters["baseline"])
            self._session = _session(trees_graph)

    def decision(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The log-odds before calibration, one per row."""
        matrix = self._preprocess.matrix(columns)
        if self._session is None:
            return matrix @ self._coef + self._offset
        return self._session.run([TREES_OUTPUT], {"X": matrix})[0][:, 0] + self._offset

    def proba(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Probability of the positive class: the logistic function of `decision`."""
        with np.errstate(over="ignore"):  # exp overflows to inf for log-odds below -709: p = 0
            return 1.0 / (1.0 + np.exp(-self.decision(columns)))

    def decision_one(self, record: Mapping[str, Any]) -> float:
        """`decision` for one validated record, without building columns (the API's common case)."""
        row = self._preprocess.row(record)
        if self._session is None:
            return sum(c * x for c, x in zip(self._coef_list, row, strict=True)) + self._offset
        matrix = np.array([row], dtype=np.float64)
        return float(self._session.run([TREES_OUTPUT], {"X": matrix})[0][0, 0]) + self._offset

    def proba_one(self, record: Mapping[str, Any]) -> float:
        """`proba` for one validated record, in Python floats."""
        return logistic(self.decision_one(record))


def logistic(log_odds: float) -> float:
    """1 / (1 + e^-x) for one float; 0.0 where e^-x overflows, as numpy's inf gives."""
    try:
        return 1.0 / (1.0 + math.exp(-log_odds))
    except OverflowError:
        return 0.0


def _session(graph: bytes | None):
    from clinrisk.serving.ort_session import inference_session

    if not graph:
        raise ValueError("a tree-ensemble lean scorer needs its graph")
    return inference_session(graph)
