"""Turn a spec into scikit-learn pipelines: preprocessing plus one candidate estimator."""

from __future__ import annotations

import importlib

from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from clinrisk.errors import SpecError
from clinrisk.spec import CandidateSpec, ModelSpec

# Candidates are named in YAML; only estimators from these packages may be imported.
ALLOWED_ESTIMATOR_PACKAGES = ("sklearn.",)


def build_preprocessor(spec: ModelSpec) -> ColumnTransformer:
    """Impute and scale numeric columns, one-hot encode categorical ones with the spec's categories."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categories = [spec.features[name].categories for name in spec.categorical_features]
    categorical = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
    return ColumnTransformer(
        [
            ("numeric", numeric, spec.numeric_features),
            ("categorical", categorical, spec.categorical_features),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def build_estimator(candidate: CandidateSpec, seed: int) -> ClassifierMixin:
    """Import the candidate's estimator class from its dotted path and configure it."""
    module_name, _, class_name = candidate.estimator.rpartition(".")
    if not candidate.estimator.startswith(ALLOWED_ESTIMATOR_PACKAGES):
        raise SpecError(f"candidate '{candidate.name}': estimator must come from scikit-learn")
    try:
        estimator_class = getattr(importlib.import_module(module_name), class_name)
        estimator = estimator_class(**candidate.params)
    except (ImportError, AttributeError, TypeError) as exc:
        raise SpecError(f"candidate '{candidate.name}': cannot build {candidate.estimator}: {exc}") from None
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    return estimator


def build_pipeline(spec: ModelSpec, candidate: CandidateSpec, seed: int) -> Pipeline:
    """The full model: named preprocessing step then the classifier (or regressor)."""
    step = "regressor" if spec.is_regression else "classifier"
    return Pipeline([("preprocess", build_preprocessor(spec)), (step, build_estimator(candidate, seed))])
