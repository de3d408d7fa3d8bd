"""Request parsing and validation, and the declared shapes of every response.

Patient records are validated with the model spec's own pydantic model (`spec.record_model`),
strictly: a string is not a number. Every problem is reported with its field path, all at once.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any, Literal

from flask import current_app, request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from clinrisk.errors import RepeatedQueryParameters
from clinrisk.web.errors import ApiError, problem

# The spellings of one UUID that /feedback accepts: any case, with or without hyphens, in braces
# or as a URN (RFC 9562). Every one is stored and compared as the canonical lower-case form.
_HEX_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
UUID_PATTERN = rf"^(?:{_HEX_UUID}|\{{{_HEX_UUID}\}}|[uU][rR][nN]:[uU][uU][iI][dD]:{_HEX_UUID})$"


def canonical_uuid(value: str) -> str:
    """`{0A1B...}`, `urn:uuid:0a1b...` or `0A1B...` -> `0a1b...-...`: one spelling per id."""
    return str(uuid.UUID(value.lower()))


def prediction_id(value: str) -> str:
    """An accepted spelling of a UUID (UUID_PATTERN) in its canonical form; else a validation error
    that says what a prediction id looks like (pydantic's own would quote the pattern)."""
    if not re.fullmatch(UUID_PATTERN, value):
        raise PydanticCustomError(
            "string_pattern_mismatch",
            "not a prediction id: send back the prediction_id a predict route returned, a UUID such as "
            "'0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5' (any case; braces or a urn:uuid: prefix are accepted)",
        )
    return canonical_uuid(value)


# The OpenAPI document still gives the pattern; the check is `prediction_id`'s, for its message.
PredictionId = Annotated[
    str, AfterValidator(prediction_id), Field(json_schema_extra={"pattern": UUID_PATTERN})
]


class ModelRef(BaseModel):
    name: str
    version: str


class Reason(BaseModel):
    feature: str = Field(description="Input feature name, as in the patient record")
    value: float | int | str | None = Field(description="The patient's value of the feature")
    contribution: float = Field(description="How much this feature moved the output from the base value")


class ExplanationOut(BaseModel):
    scale: Literal["log-odds", "probability"] = Field(
        description=(
            "What the contributions add up to: 'log-odds' = the calibrated log-odds "
            "log(p / (1 - p)) of `probability` (single models: exact for logistic regression, "
            "SHAP TreeExplainer for gradient boosting); 'probability' = `probability` itself "
            "(soft-voting ensembles, per-member reasons rescaled to each member's probability change)"
        )
    )
    base_value: float = Field(description="The output for the average training patient, on `scale`")
    output: float = Field(description="base_value + sum of contributions: this patient's output on `scale`")
    reasons: list[Reason] = Field(description="Every feature, largest |contribution| first")


class PredictionResult(BaseModel):
    prediction_id: str = Field(description="uuid4 of this prediction; send it back with /feedback")
    probability: float = Field(
        ge=0,
        le=1,
        description=(
            "Calibrated risk of the positive outcome (e.g. a stroke) for this patient: among many "
            "patients scored 0.10, about 10 % had the outcome in the model's holdout. Platt-scaled on "
            "out-of-fold predictions; versions trained before calibration return the raw score."
        ),
    )
    prediction: Literal[0, 1] = Field(description="1 when probability >= threshold (the model's own)")
    threshold: float = Field(
        description="The decision threshold of the model version, on the probability's scale"
    )
    model: ModelRef
    explanation: ExplanationOut | None = Field(
        default=None, description="Only with ?explain=true: why this patient got this probability"
    )


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Feedback")

    prediction_id: PredictionId = Field(
        description="The id /predict returned (any case; braces or a urn:uuid: prefix are accepted)",
    )
    outcome: Literal[0, 1] = Field(description="The observed outcome (1 = the event happened)")


class RegressionResult(BaseModel):
    """A regression's answer: the predicted value and the version; no probability, no threshold."""

    prediction_id: str = Field(description="uuid4 of this prediction; send it back with the feedback route")
    prediction: float = Field(
        description="The predicted outcome, in the target's units (the spec's description)"
    )
    model_version: str = Field(description="The registry version of the model that made the prediction")
    model: ModelRef


class RegressionFeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", title="RegressionFeedback")

    prediction_id: PredictionId = Field(
        description="The id the predict route returned (any case; braces or a urn:uuid: prefix are accepted)",
    )
    outcome: float = Field(
        allow_inf_nan=False, description="The observed value of the outcome, in the target's units"
    )


class FeedbackReceipt(BaseModel):
    prediction_id: str
    outcome: float = Field(description="As sent: 0/1 for a classification, the value for a regression")
    received_at: str


class ModelStatus(BaseModel):
    name: str
    kind: Literal["classification", "regression"] | None = Field(
        description="null when the spec file cannot be served"
    )
    status: Literal["ready", "degraded", "unavailable", "loading"]
    reason: str | None
    version: str | None = Field(description="The champion served; null while none is loaded")
    threshold: float | None = Field(description="The champion's decision threshold; null for a regression")
    loaded_from: Literal["registry", "cache"] | None


class ModelList(BaseModel):
    default: str = Field(description="The model /predict, /feedback, /model and the patient page serve")
    models: list[ModelStatus]


class Problem(BaseModel):
    field: str = Field(description='Path of the offending value: "age", "[3].age" or "body"')
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    error: str
    message: str
    errors: list[Problem]


class Health(BaseModel):
    status: Literal["ok"]


class ModelReadiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable", "loading"]
    reason: str | None
    version: str | None


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable", "loading"] = Field(
        description="The default model's state: the service is ready when the default model is"
    )
    reason: str | None
    model: ModelRef | None
    models: dict[str, ModelReadiness] = Field(description="Every served model's own state, by name")


class ScoringPathInfo(BaseModel):
    active: Literal["numpy", "tree-ensemble", "onnx", "sklearn"] = Field(
        description="numpy: logistic regression in numpy; tree-ensemble: numpy preprocessing and one "
        "ONNX TreeEnsemble node; onnx: the whole pipeline as an ONNX graph (versions signed before "
        "lean scorers, or models they cannot express); sklearn: scikit-learn"
    )
    reason: str
    max_abs_diff: float | None
    verified_rows: int


class ModelInfo(BaseModel):
    name: str
    version: str
    threshold: float | None = Field(description="The decision threshold; null for a regression")
    candidate: str | None
    holdout_metrics: dict[str, float]
    trained_at: str | None
    data_sha256: str | None
    run_id: str | None
    scoring_path: ScoringPathInfo
    loaded_from: Literal["registry", "cache"]
    loaded_at: str
    status: Literal["ready", "degraded"]
    reason: str | None


def json_body() -> Any:
    """The parsed JSON body: 415 for another content type, 413 when too large, 400 when malformed."""
    if not request.is_json:
        message = "send the body as JSON with 'Content-Type: application/json'"
        raise ApiError(415, "unsupported_media_type", message, [problem((), message, "content_type")])
    raw = _read_body(current_app.config["MAX_CONTENT_LENGTH"])
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        message = f"the body is not valid JSON: {exc}"
        raise ApiError(400, "malformed_json", message, [problem((), message, "json_invalid")]) from None


def _too_large(limit: int) -> ApiError:
    message = f"the request body is larger than {limit} bytes"
    return ApiError(413, "payload_too_large", message, [problem((), message, "too_large")])


def _read_body(limit: int) -> bytes:
    """The whole body, or 413 when it is larger than `limit` bytes however it arrives.

    A Content-Length over the limit is refused by werkzeug before reading. A chunked body has no
    length: werkzeug's LimitedStream stops reading at the limit without raising (werkzeug 3.1),
    which cut a too-large body into invalid JSON. So the stream the server terminates
    (`wsgi.input_terminated`, set by gunicorn) is read here, one byte past the limit.
    """
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)
    stream, blocks, size = request.input_stream, [], 0
    while size <= limit:
        block = stream.read(min(1 << 16, limit + 1 - size))
        if not block:
            break
        blocks.append(block)
        size += len(block)
    if size > limit:
        raise _too_large(limit)
    return b"".join(blocks)


def _problems(exc: ValidationError, prefix: tuple = ()) -> list[dict[str, Any]]:
    return [problem(prefix + tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors(include_url=False)]


def _invalid(problems: list[dict[str, Any]]) -> ApiError:
    count = len(problems)
    return ApiError(422, "validation_error", f"{count} problem{'s' * (count != 1)} in the request", problems)


def validate_records(payload: Any, record_model: type[BaseModel], max_rows: int) -> tuple[list[dict], bool]:
    """Validated records (canonical field names) and whether the body was an array."""
    if isinstance(payload, dict):
        record, problems = _validate_record(payload, record_model, ())
        if problems:
            raise _invalid(problems)
        return [record], False
    if not isinstance(payload, list):
        raise _invalid([problem((), "the body must be a patient object or an array of them", "body_type")])
    if not payload:
        raise _invalid([problem((), "the array is empty: send at least one patient", "too_short")])
    if len(payload) > max_rows:
        message = f"{len(payload)} records in one request; the limit is {max_rows}"
        raise ApiError(413, "too_many_records", message, [problem((), message, "too_long")])
    checked = [_validate_record(item, record_model, (index,)) for index, item in enumerate(payload)]
    problems = [p for _, item_problems in checked for p in item_problems]
    if problems:
        raise _invalid(problems)
    return [record for record, _ in checked], True


def _validate_record(item: Any, record_model: type[BaseModel], prefix: tuple) -> tuple[dict, list[dict]]:
    try:
        return record_model.model_validate(item, strict=True).model_dump(), []
    except ValidationError as exc:
        return {}, _problems(exc, prefix)


EXPLAIN = "explain"


def explain_requested() -> bool:
    """`?explain=true` asks for reasons, `false` (or no parameter) does not; any other value is a 422.

    Exactly the two spellings of an OpenAPI boolean in a query, so the document and the service agree.
    """
    if not request.query_string:  # the usual request: no need to parse an empty query
        return False
    raw = request.args.get(EXPLAIN)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    message = f"explain must be true or false, not '{raw[:20]}'"
    raise _invalid([problem(("query", "explain"), message, "bool_parsing")])


def validate_feedback(payload: Any, *, regression: bool = False) -> FeedbackIn | RegressionFeedbackIn:
    """A classification's outcome is 0 or 1, a regression's a finite number; else 422 naming `outcome`."""
    schema = RegressionFeedbackIn if regression else FeedbackIn
    try:
        return schema.model_validate(payload, strict=True)
    except ValidationError as exc:
        raise _invalid(_problems(exc)) from None


def record_from_query(spec, params) -> dict[str, Any]:
    """The spec's record from query parameters; a feature given twice is a 422 naming it
    (`age=55&age=56`, or `bp=90` beside `blood_pressure=100`): which value was meant cannot be guessed."""
    try:
        return spec.record_from_query(params)
    except RepeatedQueryParameters as exc:
        raise _invalid(
            [problem((name,), exc.message_for(name), "repeated_parameter") for name in exc.repeats]
        ) from None
