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

# Candidates are named in YAML; only these exact estimator classes may be imported. A prefix
# such as "sklearn." would let a spec call any function in scikit-learn (some run commands).
ALLOWED_ESTIMATORS = frozenset(
    {
        "sklearn.linear_model.LogisticRegression",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.ensemble.ExtraTreesClassifier",
        "sklearn.tree.DecisionTreeClassifier",
        "sklearn.ensemble.VotingClassifier",  # soft vote of members that are themselves allowed
        # Regressors, for specs whose objective.kind is regression.
        "sklearn.linear_model.SGDRegressor",
        "sklearn.linear_model.Ridge",
        "sklearn.linear_model.LinearRegression",
    }
)


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


def build_estimator(candidate: CandidateSpec, seed: int, **members: ClassifierMixin) -> ClassifierMixin:
    """Import the candidate's estimator class from its dotted path and configure it.

    An ensemble candidate gets its built members as `estimators=[(name, estimator), ...]`,
    the argument scikit-learn's VotingClassifier and StackingClassifier take.
    """
    module_name, _, class_name = candidate.estimator.rpartition(".")
    if candidate.estimator not in ALLOWED_ESTIMATORS:
        allowed = ", ".join(sorted(ALLOWED_ESTIMATORS))
        raise SpecError(f"candidate '{candidate.name}': estimator must be one of: {allowed}")
    params = {**candidate.params, **({"estimators": list(members.items())} if members else {})}
    try:
        estimator_class = getattr(importlib.import_module(module_name), class_name)
        estimator = estimator_class(**params)
    except (ImportError, AttributeError, TypeError) as exc:
        raise SpecError(f"candidate '{candidate.name}': cannot build {candidate.estimator}: {exc}") from None
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    return estimator


def build_pipeline(spec: ModelSpec, candidate: CandidateSpec, seed: int) -> Pipeline:
    """The full model: preprocessing, then the classifier or regressor (an ensemble gets its members)."""
    members = {name: build_estimator(spec.candidate(name), seed) for name in candidate.members}
    estimator = build_estimator(candidate, seed, **members)
    step = "regressor" if spec.is_regression else "classifier"
    return Pipeline([("preprocess", build_preprocessor(spec)), (step, estimator)])
