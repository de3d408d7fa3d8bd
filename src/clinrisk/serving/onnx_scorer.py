"""The lean scoring path: a fitted pipeline as one ONNX graph, run by onnxruntime.

skl2onnx is imported only here (onnxruntime's sessions come from `ort_session`). The graph
computes in double precision, like scikit-learn, so a tree split on a value equal to its
threshold goes the same way in both. Two of skl2onnx's converters are replaced for that:
SimpleImputer (onnxruntime's Imputer has no double kernel) and HistGradientBoostingClassifier
(skl2onnx stores float32 thresholds, which flips rows that sit exactly on a split; ai.onnx.ml
TreeEnsemble, opset 5, holds double splits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from clinrisk.serving.scorer import OneRowOfABatch
from clinrisk.spec import ModelSpec

# skl2onnx refuses an ai.onnx.ml opset above 3; TreeEnsemble needs 5, set after conversion.
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}
ML_OPSET_WITH_TREE_ENSEMBLE = 5
PROBABILITIES = "probabilities"


def _add(container, scope, op_type: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
    container.add_node(op_type, inputs, outputs, name=scope.get_unique_operator_name(op_type), **attrs)


def _constant(container, scope, name: str, values: np.ndarray) -> str:
    from skl2onnx.proto import onnx_proto

    proto = onnx_proto.TensorProto.INT64 if values.dtype.kind == "i" else onnx_proto.TensorProto.DOUBLE
    unique = scope.get_unique_variable_name(name)
    container.add_initializer(unique, proto, list(values.shape), values.ravel().tolist())
    return unique


def _convert_imputer(scope, operator, container) -> None:
    """SimpleImputer as IsNaN + Where, which onnxruntime runs in double precision."""
    from skl2onnx.operator_converters.common import concatenate_variables

    imputer = operator.raw_operator
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise NotImplementedError("only NaN as the missing value is supported")
    features = concatenate_variables(scope, operator.inputs, container)
    fill = _constant(
        container, scope, "fill", np.asarray(imputer.statistics_, dtype=np.float64).reshape(1, -1)
    )
    missing = scope.get_unique_variable_name("missing")
    _add(container, scope, "IsNaN", [features], [missing])
    _add(container, scope, "Where", [missing, fill, features], [operator.outputs[0].full_name])


def _tree_ensemble_attributes(classifier: HistGradientBoostingClassifier) -> dict[str, Any]:
    """Flatten the fitted trees into the attributes of one ai.onnx.ml TreeEnsemble node."""
    from onnx import numpy_helper

    nodes: dict[str, list] = {
        k: [] for k in ("feature", "split", "missing", "true", "true_leaf", "false", "false_leaf")
    }
    leaves: list[float] = []
    roots: list[int] = []
    for (predictor,) in classifier._predictors:
        _add_tree(predictor.nodes, nodes, leaves, roots)
    return {
        "tree_roots": roots,
        "nodes_featureids": nodes["feature"],
        "nodes_splits": numpy_helper.from_array(np.asarray(nodes["split"], dtype=np.float64)),
        "nodes_modes": numpy_helper.from_array(np.zeros(len(nodes["split"]), dtype=np.uint8)),  # BRANCH_LEQ
        "nodes_missing_value_tracks_true": nodes["missing"],
        "nodes_truenodeids": nodes["true"],
        "nodes_trueleafs": nodes["true_leaf"],
        "nodes_falsenodeids": nodes["false"],
        "nodes_falseleafs": nodes["false_leaf"],
        "leaf_targetids": [0] * len(leaves),
        "leaf_weights": numpy_helper.from_array(np.asarray(leaves, dtype=np.float64)),
        "n_targets": 1,
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE: the baseline is added and the sigmoid applied after
    }


def _add_tree(tree: np.ndarray, nodes: dict[str, list], leaves: list[float], roots: list[int]) -> None:
    """Append one scikit-learn predictor tree: x <= threshold (or missing, if so trained) goes left."""
    if "is_categorical" in tree.dtype.names and tree["is_categorical"].any():
        raise NotImplementedError("categorical splits are not supported")
    leaf_index = {int(i): len(leaves) + k for k, i in enumerate(np.flatnonzero(tree["is_leaf"]))}
    leaves.extend(float(tree[i]["value"]) for i in leaf_index)
    inner = np.flatnonzero(~tree["is_leaf"].astype(bool))
    node_index = {int(i): len(nodes["split"]) + k for k, i in enumerate(inner)}
    roots.append(len(nodes["split"]))
    if not len(inner):  # a single-leaf tree: one split whose both branches reach the leaf
        for key, value in (
            ("feature", 0),
            ("split", 0.0),
            ("missing", 0),
            ("true", leaf_index[0]),
            ("true_leaf", 1),
            ("false", leaf_index[0]),
            ("false_leaf", 1),
        ):
            nodes[key].append(value)
        return
    for i in inner:
        node = tree[i]
        nodes["feature"].append(int(node["feature_idx"]))
        nodes["split"].append(float(node["num_threshold"]))
        nodes["missing"].append(int(node["missing_go_to_left"]))
        for side, child in (("true", int(node["left"])), ("false", int(node["right"]))):
            is_leaf = child in leaf_index
            nodes[side].append(leaf_index[child] if is_leaf else node_index[child])
            nodes[f"{side}_leaf"].append(int(is_leaf))


def _convert_hist_gradient_boosting(scope, operator, container) -> None:
    """A binary HistGradientBoostingClassifier as TreeEnsemble + baseline + sigmoid, in double."""
    from skl2onnx.operator_converters.common import concatenate_variables

    classifier = operator.raw_operator
    if classifier.n_trees_per_iteration_ != 1:
        raise NotImplementedError("only binary classifiers are supported")
    features = concatenate_variables(scope, operator.inputs, container)
    raw, score, p1, p0 = (scope.get_unique_variable_name(n) for n in ("raw", "score", "p1", "p0"))
    # Declared as version 3 for skl2onnx's bookkeeping; the model's ml opset is raised to 5 after.
    _add(
        container,
        scope,
        "TreeEnsemble",
        [features],
        [raw],
        op_domain="ai.onnx.ml",
        op_version=3,
        **_tree_ensemble_attributes(classifier),
    )
    baseline = _constant(
        container,
        scope,
        "baseline",
        np.asarray(classifier._baseline_prediction, dtype=np.float64).reshape(1, 1),
    )
    _add(container, scope, "Add", [raw, baseline], [score])
    _add(container, scope, "Sigmoid", [score], [p1])
    _add(container, scope, "Sub", [_constant(container, scope, "one", np.ones((1, 1))), p1], [p0])
    _add(container, scope, "Concat", [p0, p1], [operator.outputs[1].full_name], axis=1)
    _add_labels(scope, container, p1, operator.outputs[0].full_name)


def _add_labels(scope, container, p1: str, output: str) -> None:
    """The label output skl2onnx declares for a classifier (unused by the scorer)."""
    from skl2onnx.proto import onnx_proto

    above, as_int = scope.get_unique_variable_name("above"), scope.get_unique_variable_name("as_int")
    _add(
        container, scope, "Greater", [p1, _constant(container, scope, "half", np.full((1, 1), 0.5))], [above]
    )
    _add(container, scope, "Cast", [above], [as_int], to=onnx_proto.TensorProto.INT64)
    _add(
        container,
        scope,
        "Reshape",
        [as_int, _constant(container, scope, "flat", np.array([-1], dtype=np.int64))],
        [output],
    )


def to_onnx(pipeline: Pipeline, spec: ModelSpec) -> bytes:
    """Convert a fitted pipeline: one double input per numeric feature, one string input per category."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    inputs = [
        (name, StringTensorType([None, 1]) if feature.type == "categorical" else DoubleTensorType([None, 1]))
        for name, feature in spec.features.items()
    ]
    # A regressor has no probabilities to unzip; its one output is the predicted value.
    options = {} if spec.is_regression else {id(pipeline.steps[-1][1]): {"zipmap": False}}
    model = convert_sklearn(
        pipeline,
        initial_types=inputs,
        target_opset=TARGET_OPSET,
        options=options,
        custom_conversion_functions={
            SimpleImputer: _convert_imputer,
            HistGradientBoostingClassifier: _convert_hist_gradient_boosting,
        },
    )
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = ML_OPSET_WITH_TREE_ENSEMBLE
    return model.SerializeToString()


class OnnxScorer(OneRowOfABatch):
    """Probabilities from an onnxruntime session, fed with plain numpy columns."""

    path = "onnx"

    def __init__(self, onnx_model: bytes, spec: ModelSpec):
        from clinrisk.serving.ort_session import inference_session

        self._session = inference_session(onnx_model)
        self.spec = spec
        self._categorical = set(spec.categorical_features)
        self._regression = spec.is_regression
        self._output = self._session.get_outputs()[0].name if self._regression else PROBABILITIES

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, spec: ModelSpec) -> OnnxScorer:
        return cls(to_onnx(pipeline, spec), spec)

    def proba(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Probability of the positive class for column arrays (float64 numbers, object strings).

        For a regression: the predicted value of each row, in the target's units.
        """
        feeds = {name: values.reshape(-1, 1) for name, values in columns.items()}
        found = self._session.run([self._output], feeds)[0]
        return found.reshape(-1).astype(np.float64) if self._regression else found[:, 1]
