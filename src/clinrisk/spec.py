"""The declared model spec: one YAML file per clinical model, the single source of truth.

Request validation, training columns, the MLflow signature, the OpenAPI document and the
Evidently column mapping are all derived from a `ModelSpec`, so a new model needs a new
spec file and no new code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    model_validator,
)

from clinrisk.errors import RepeatedQueryParameters, SpecError

FeatureType = Literal["numeric", "binary", "categorical"]


class FeatureSpec(BaseModel):
    """One input column: its type and what values it may take."""

    model_config = ConfigDict(extra="forbid")

    type: FeatureType
    categories: list[str] | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    # Values that stand for "not measured" in the raw data (e.g. 0 for glucose in Pima).
    missing_values: list[float] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    # The column's name in the data files when it differs from the API name (e.g. `%Red Pixel`).
    column: str | None = None
    # Extra names accepted as GET query parameters (short forms such as `bp`).
    query_aliases: list[str] = Field(default_factory=list)
    description: str | None = None

    @model_validator(mode="after")
    def _categories_match_type(self) -> FeatureSpec:
        if self.type == "categorical" and not self.categories:
            raise ValueError("a categorical feature needs a non-empty 'categories' list")
        if self.type != "categorical" and self.categories:
            raise ValueError("only categorical features take 'categories'")
        return self


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str | None = None
    na_values: list[str] = Field(default_factory=list)


class TargetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    positive: int | str = 1
    negative: int | str = 0
    # How the patient page names the event, e.g. "a stroke".
    label: str = "the outcome"


class ObjectiveSpec(BaseModel):
    """Classification: maximise recall subject to a precision floor, with a safety margin on the floor."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["classification"] = "classification"
    maximise: Literal["recall"] = "recall"
    precision_floor: float = Field(gt=0, lt=1)
    safety_margin: float = Field(default=0.0, ge=0, lt=1)
    # Out-of-fold recalls closer than this are treated as equal when comparing candidates.
    selection_tolerance: float = Field(default=0.0, ge=0, lt=1)


class GateSpec(BaseModel):
    """How sure the promotion gate must be (see clinrisk.gate and the README's gate rules)."""

    model_config = ConfigDict(extra="forbid")

    # Significance level of the floor check and of the paired comparison; intervals are at 1 - alpha.
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    # Fewer positives than this in the evaluation never replace a champion.
    min_positives: int = Field(default=30, ge=1)


class RegressionObjectiveSpec(BaseModel):
    """Regression: the metric (R², coefficient of determination) on unseen rows must reach `floor`.

    The gate judges R² on the holdout with a percentile bootstrap interval of
    `bootstrap_rounds` resamples (Efron & Tibshirani 1993); see `clinrisk.gate_regression`.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["regression"]
    metric: Literal["r2"] = "r2"
    floor: float = Field(gt=-1, lt=1)
    bootstrap_rounds: int = Field(default=1000, ge=100)


def _objective_kind(raw: Any) -> str:
    """Specs written before regression existed have no `kind`: they are classifications."""
    if isinstance(raw, Mapping):
        return raw.get("kind", "classification")
    return getattr(raw, "kind", "classification")


Objective = Annotated[
    Annotated[ObjectiveSpec, Tag("classification")] | Annotated[RegressionObjectiveSpec, Tag("regression")],
    Discriminator(_objective_kind),
]


class TrainingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    cv_folds: int = Field(default=5, ge=2)
    # Repetitions of the K-fold split, each shuffled anew; out-of-fold scores are averaged over
    # them. More than 1 steadies the threshold when positives are few (e.g. 26 for anemia).
    cv_repeats: int = Field(default=1, ge=1)
    seed: int = 42
    reference_sample_rows: int = Field(default=2000, ge=10)
    # After the gate has judged the model fitted without the evaluation rows, the version that is
    # registered and served is the same candidate and threshold refit on every row of the snapshot.
    refit_on_all: bool = True


class CandidateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)
    # An ensemble (e.g. sklearn VotingClassifier) names the other candidates it combines.
    members: list[str] = Field(default_factory=list)


class SliceSpec(BaseModel):
    """A patient grouping for fairness reports: a feature's categories, or numeric bands.

    `bands` are the inner cut points of a numeric feature, left-closed: [45, 65] gives
    <45, 45-64 and ≥65. `labels` name the bands (one more than the cut points).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    feature: str
    bands: list[float] | None = None
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _labels_match_bands(self) -> SliceSpec:
        if self.bands is not None and sorted(set(self.bands)) != self.bands:
            raise ValueError(f"slice '{self.name}': bands must increase strictly")
        if self.labels is not None and (self.bands is None or len(self.labels) != len(self.bands) + 1):
            raise ValueError(f"slice '{self.name}': labels need bands, one label more than cut points")
        return self


class ModelSpec(BaseModel):
    """A whole clinical model: data, features, target, objective and candidate estimators."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    data: DataSpec
    id_column: str | None = None
    target: TargetSpec
    features: dict[str, FeatureSpec]
    objective: Objective
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    gate: GateSpec = Field(default_factory=GateSpec)
    candidates: list[CandidateSpec] = Field(min_length=1)
    # Patient groups whose recall, precision and flagged share are reported side by side.
    slices: list[SliceSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _slices_name_features(self) -> ModelSpec:
        for item in self.slices:
            feature = self.features.get(item.feature)
            if feature is None:
                raise ValueError(f"slice '{item.name}': unknown feature '{item.feature}'")
            if (item.bands is not None) != (feature.type == "numeric"):
                raise ValueError(
                    f"slice '{item.name}': numeric features need bands, others must not have them"
                )
        return self

    @model_validator(mode="after")
    def _members_are_plain_candidates(self) -> ModelSpec:
        plain = {c.name for c in self.candidates if not c.members}
        for candidate in self.candidates:
            unknown = [m for m in candidate.members if m not in plain]
            if unknown:
                raise ValueError(
                    f"candidate '{candidate.name}': members {unknown} are not candidates without members"
                )
        return self

    def candidate(self, name: str) -> CandidateSpec:
        return next(c for c in self.candidates if c.name == name)

    @model_validator(mode="after")
    def _names_are_unambiguous(self) -> ModelSpec:
        """Each data column, alias and query name stands for exactly one feature."""
        owners: dict[str, set[str]] = {}
        for name, f in self.features.items():
            for other in {f.column or name, *f.aliases, *f.query_aliases} - {name}:
                owners.setdefault(other, set()).add(name)
        clashes = {n: o for n, o in owners.items() if len(o) > 1 or (n in self.features and o != {n})}
        if clashes:
            listed = "; ".join(f"'{n}' names {', '.join(sorted(o))}" for n, o in sorted(clashes.items()))
            raise ValueError(f"ambiguous column or alias names: {listed}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)

    @property
    def numeric_features(self) -> list[str]:
        return [n for n, f in self.features.items() if f.type in ("numeric", "binary")]

    @property
    def categorical_features(self) -> list[str]:
        return [n for n, f in self.features.items() if f.type == "categorical"]

    @property
    def is_regression(self) -> bool:
        return self.objective.kind == "regression"

    @cached_property
    def alias_map(self) -> dict[str, str]:
        """Map every accepted alternative field name (and data column name) to its feature name."""
        aliases = {alias: name for name, f in self.features.items() for alias in f.aliases}
        return {**aliases, **self.column_map}

    @cached_property
    def column_map(self) -> dict[str, str]:
        """Data column name -> API feature name, for features whose data column is named otherwise."""
        return {f.column: name for name, f in self.features.items() if f.column and f.column != name}

    def data_column(self, feature: str) -> str:
        """The name a feature has in the data files (its API name unless `column` says otherwise)."""
        return self.features[feature].column or feature

    def to_data_columns(self, frame):
        """Rename API feature names back to the data's column names (the reverse of loading)."""
        return frame.rename(columns={api: column for column, api in self.column_map.items()})

    @cached_property
    def query_map(self) -> dict[str, str]:
        """Every accepted GET query-parameter name -> feature name (the name itself included)."""
        names = {name: name for name in self.features}
        aliases = {a: name for name, f in self.features.items() for a in [*f.aliases, *f.query_aliases]}
        return {**aliases, **names}

    def record_from_query(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """One record from GET query parameters (strings), ready for strict `record_model` validation.

        Aliases become feature names and numbers are parsed per the feature's type; a value that
        does not parse is passed on unchanged so that validation names the field. Unknown
        parameters are kept, so validation reports them as extra fields. An empty value is missing.
        `params` may be a dict or a werkzeug MultiDict.

        Raises `RepeatedQueryParameters` naming every feature (or unknown parameter) given more
        than once, under its name or an alias (`age=1&age=2`, or `bp` beside `blood_pressure`).
        """
        given: dict[str, list[tuple[str, Any]]] = {}
        for key in params:
            values = params.getlist(key) if hasattr(params, "getlist") else [params[key]]
            given.setdefault(self.query_map.get(key, key), []).extend((key, v) for v in values)
        repeats = {name: [key for key, _ in pairs] for name, pairs in given.items() if len(pairs) > 1}
        if repeats:
            raise RepeatedQueryParameters(repeats)
        return {name: self._query_value(name, value) for name, [(_, value)] in given.items()}

    def _query_value(self, name: str, value: Any) -> Any:
        feature = self.features.get(name)
        return _parse_query_value(value, feature) if feature else value

    @cached_property
    def record_model(self) -> type[BaseModel]:
        """A pydantic model of one input record, used for validation and OpenAPI."""
        return build_record_model(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _field_definition(name: str, feature: FeatureSpec) -> tuple[Any, Any]:
    """The (annotation, Field) pair pydantic needs for one feature."""
    if feature.type == "categorical":
        annotation: Any = Literal[tuple(feature.categories or [])]
    elif feature.type == "binary":
        annotation = Literal[0, 1]
    else:
        annotation = float
    if feature.nullable:
        annotation = annotation | None
    constraints: dict[str, Any] = {"description": feature.description}
    if feature.type == "numeric":
        constraints.update(ge=feature.min, le=feature.max, allow_inf_nan=False)
    if feature.aliases:
        constraints["validation_alias"] = AliasChoices(name, *feature.aliases)
    default = None if feature.nullable else ...
    return annotation, Field(default, **constraints)


def _parse_query_value(value: Any, feature: FeatureSpec) -> Any:
    """A query string as the JSON value it stands for: a number, 0/1, a category or None."""
    if not isinstance(value, str) or feature.type == "categorical":
        return value if value != "" else None
    if value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    if feature.type == "binary" and number.is_integer():
        return int(number)
    return number


def build_record_model(spec: ModelSpec) -> type[BaseModel]:
    """Create the pydantic model of one record: strict fields, no unknown extras."""
    fields = {name: _field_definition(name, f) for name, f in spec.features.items()}
    config = ConfigDict(extra="forbid", strict=False, title=f"{spec.name.capitalize()}Patient")
    return create_model(f"{spec.name.capitalize()}Record", __config__=config, **fields)


def load_spec(path: Path) -> ModelSpec:
    """Read and validate a spec file; a broken spec fails with the file and field named."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"model spec not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"model spec {path} is not valid YAML: {exc}") from None
    try:
        return ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"model spec {path} is invalid:\n{_without_union_tags(str(exc))}") from None


def _without_union_tags(message: str) -> str:
    """`objective.classification.precision_floor` -> `objective.precision_floor`: the field as written.

    pydantic names the chosen member of a tagged union in an error's path; the YAML has no such key.
    """
    return re.sub(r"^objective\.(classification|regression)(?=\.|$)", "objective", message, flags=re.M)


def spec_from_yaml(text: str) -> ModelSpec:
    """Rebuild a spec from the YAML text stored inside a logged model."""
    return ModelSpec.model_validate(yaml.safe_load(text))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
