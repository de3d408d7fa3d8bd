"""The OpenAPI document, generated from the same pydantic models that validate requests.

Every served model gets its routes, each from its own spec: `/models/<name>/predict` (POST
a body, or GET with one query parameter per feature), `/models/<name>/feedback` and
`/models/<name>`; `/predict`, `/feedback` and `/model` document the default model. A
regression's answer is `prediction` (target units) and `model_version`: no probability.

Served as OpenAPI 3.0.3, which the bundled Swagger UI (4.x) renders: pydantic's JSON Schema
(2020-12) is translated where the two differ (null types, const, numeric exclusive bounds).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from clinrisk.settings import Settings
from clinrisk.spec import ModelSpec
from clinrisk.web.schemas import (
    EXPLAIN,
    ErrorBody,
    FeedbackIn,
    FeedbackReceipt,
    Health,
    ModelInfo,
    ModelList,
    PredictionResult,
    Readiness,
    RegressionFeedbackIn,
    RegressionResult,
)

REF = "#/components/schemas/{model}"
SECURITY = [{"basicAuth": []}, {"bearerAuth": []}]
ERROR_TEXT = {
    400: "Malformed JSON",
    401: "Missing or wrong credentials",
    404: "Unknown prediction id (of this model)",
    413: "Body or batch too large",
    415: "Content type is not application/json",
    501: "The model has no exact explanation method (only with ?explain=true)",
    422: "Invalid fields, each listed with its path",
    503: "No champion model is loaded",
}

EXPLAIN_PARAMETER = {
    "name": EXPLAIN,
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": (
        "Add `explanation` to each result: every feature's contribution, largest first, adding up "
        "with `base_value` to the calibrated log-odds of `probability` (or to `probability` itself "
        "for a soft-voting ensemble; `scale` says which)."
    ),
}


def to_openapi30(schema: Any) -> Any:
    """Translate JSON Schema 2020-12 (pydantic's output) into the OpenAPI 3.0 dialect."""
    if isinstance(schema, list):
        return [to_openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: to_openapi30(value) for key, value in schema.items() if key != "examples"}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out[bound], bool):
            out[plain], out[bound] = out[bound], True
    for combiner in ("anyOf", "oneOf"):
        options = out.get(combiner)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            out.pop(combiner)
            if len(rest) == 1 and "$ref" not in rest[0]:
                out = {**rest[0], **out}
            else:
                out[combiner] = rest
            out["nullable"] = True
    return out


SHARED_MODELS: list[type[BaseModel]] = [
    PredictionResult,
    RegressionResult,
    FeedbackIn,
    RegressionFeedbackIn,
    FeedbackReceipt,
    ErrorBody,
    Health,
    Readiness,
    ModelInfo,
    ModelList,
]


def _component_schemas(specs: Mapping[str, ModelSpec]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every schema under components, and the name under which each model was put.

    Each spec's record model is listed under `Patient:<model name>` in the returned names.
    """
    records = {name: spec.record_model for name, spec in specs.items()}
    models = [*records.values(), *SHARED_MODELS]
    refs, definitions = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    names = {m.__name__: refs[(m, "validation")]["$ref"].rsplit("/", 1)[1] for m in models}
    schemas = to_openapi30(definitions.get("$defs", {}))
    for name, record in records.items():
        names[f"Patient:{name}"] = names[record.__name__]
        _document_aliases(schemas[names[record.__name__]], specs[name])
    return schemas, names


def _document_aliases(record_schema: dict[str, Any], spec: ModelSpec) -> None:
    for name, feature in spec.features.items():
        if feature.aliases and name in record_schema.get("properties", {}):
            field = record_schema["properties"][name]
            also = ", ".join(feature.aliases)
            field["description"] = f"{field.get('description') or ''} Also accepted as: {also}.".strip()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: int, ok_schema: dict[str, Any], ok_text: str, errors: list[int]) -> dict[str, Any]:
    responses: dict[str, Any] = {str(ok): {"description": ok_text, "content": _json(ok_schema)}}
    for code in errors:
        responses[str(code)] = {"description": ERROR_TEXT[code], "content": _json(_ref("ErrorBody"))}
    return responses


def _operation(
    summary: str, responses: dict[str, Any], *, body: dict | None = None, secured: bool = False
) -> dict:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    if secured:
        operation["security"] = SECURITY
    return operation


def _kind_names(names: dict[str, str], model: str, spec: ModelSpec) -> dict[str, str]:
    """The component names a model's routes use: its patient, and its kind's result and feedback."""
    regression = spec.is_regression
    result = "RegressionResult" if regression else "PredictionResult"
    feedback = "RegressionFeedbackIn" if regression else "FeedbackIn"
    return {
        **names,
        "Patient": names[f"Patient:{model}"],
        "Result": names[result],
        "Feedback": names[feedback],
    }


def _predict_post(names: dict[str, str], max_rows: int, auth: bool, model: str) -> dict[str, Any]:
    patient, result = _ref(names["Patient"]), _ref(names["Result"])
    batch = {"type": "array", "items": patient, "minItems": 1, "maxItems": max_rows}
    results = {"anyOf": [result, {"type": "array", "items": result}]}
    errors = [400, *([401] if auth else []), 413, 415, 422, 501, 503]
    summary = f"{model}: score one patient or an array of patients (same order out)"
    responses = _responses(200, results, "One result per patient", errors)
    operation = _operation(summary, responses, body={"anyOf": [patient, batch]}, secured=auth)
    operation["parameters"] = [EXPLAIN_PARAMETER]
    return operation


def _predict_path(names: dict[str, str], max_rows: int, auth: bool, model: str) -> dict[str, Any]:
    return {"post": _predict_post(names, max_rows, auth, model)}


# An empty query value (`?bmi=`), which `ModelSpec.record_from_query` reads as missing.
EMPTY_QUERY_VALUE = {"type": "string", "maxLength": 0}


def _query_parameters(patient_schema: dict[str, Any], spec: ModelSpec) -> list[dict[str, Any]]:
    """One query parameter per feature, from the same record schema the body is validated with.

    A feature that may be missing is optional (omitted or empty means not measured).
    """
    properties = patient_schema.get("properties", {})
    parameters = []
    for name, feature in spec.features.items():
        dropped = ("title", "default", "nullable", "description")
        schema = {k: v for k, v in properties.get(name, {}).items() if k not in dropped}
        description = feature.description or ""
        also = [*feature.aliases, *feature.query_aliases]
        if also:
            description = f"{description} Also accepted as: {', '.join(also)}.".strip()
        if feature.nullable:
            description = f"{description} Omit it, or leave it empty, when not measured.".strip()
            schema = {"anyOf": [schema, EMPTY_QUERY_VALUE]}  # `bmi=` means not measured, as documented
        parameter = {"name": name, "in": "query", "required": not feature.nullable, "schema": schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    if EXPLAIN not in spec.features:
        parameters.append(EXPLAIN_PARAMETER)
    return parameters


def _predict_get(
    names: dict[str, str], schemas: dict[str, Any], spec: ModelSpec, auth: bool, model: str
) -> dict[str, Any]:
    errors = [*([401] if auth else []), 422, 501, 503]
    responses = _responses(200, _ref(names["Result"]), "The patient's result", errors)
    summary = f"{model}: score one patient given as query parameters (the same validation as the POST)"
    operation = _operation(summary, responses, secured=auth)
    operation["parameters"] = _query_parameters(schemas[names["Patient"]], spec)
    return operation


def _feedback_path(names: dict[str, str], auth: bool, model: str) -> dict[str, Any]:
    errors = [400, *([401] if auth else []), 404, 413, 415, 422, 503]
    responses = _responses(201, _ref(names["FeedbackReceipt"]), "Outcome stored", errors)
    summary = f"{model}: record the observed outcome of an earlier prediction"
    return {"post": _operation(summary, responses, body=_ref(names["Feedback"]), secured=auth)}


def _model_path(names: dict[str, str], auth: bool) -> dict[str, Any]:
    responses = _responses(200, _ref(names["ModelInfo"]), "The served model", [*([401] if auth else []), 503])
    summary = "The champion being served: version, threshold, metrics and scoring path"
    return {"get": _operation(summary, responses, secured=auth)}


def _open_paths(names: dict[str, str]) -> dict[str, Any]:
    """Health, readiness and metrics: no credentials, no body."""
    readiness = _ref(names["Readiness"])
    ready = {
        **_responses(200, readiness, "A champion is loaded", []),
        "503": {"description": "No champion is loaded", "content": _json(readiness)},
    }
    metrics = {
        "200": {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
    return {
        "/health": {"get": _operation("Liveness", _responses(200, _ref(names["Health"]), "Alive", []))},
        "/ready": {
            "get": _operation("Readiness: 200 with a champion loaded (degraded when from the cache)", ready)
        },
        "/metrics": {"get": _operation("Prometheus metrics", metrics)},
    }


def _models_path(names: dict[str, str], auth: bool) -> dict[str, Any]:
    responses = _responses(200, _ref(names["ModelList"]), "Every served model", [*([401] if auth else [])])
    summary = "Every model served: kind, state, champion version and threshold"
    return {"get": _operation(summary, responses, secured=auth)}


def _model_paths(
    names: dict[str, str], schemas: dict[str, Any], model: str, spec: ModelSpec, settings: Settings
) -> dict[str, Any]:
    """The routes of one model, documented from its own spec."""
    auth = settings.auth_enabled
    own = _kind_names(names, model, spec)
    return {
        f"/models/{model}/predict": {
            "post": _predict_post(own, settings.max_batch_rows, auth, model),
            "get": _predict_get(own, schemas, spec, auth, model),
        },
        f"/models/{model}/feedback": _feedback_path(own, auth, model),
        f"/models/{model}": _model_path(own, auth),
    }


def _paths(
    names: dict[str, str],
    schemas: dict[str, Any],
    specs: Mapping[str, ModelSpec],
    default: str,
    settings: Settings,
) -> dict[str, Any]:
    auth = settings.auth_enabled
    own = _kind_names(names, default, specs[default])
    paths = {
        "/predict": _predict_path(own, settings.max_batch_rows, auth, default),
        "/feedback": _feedback_path(own, auth, default),
        "/model": _model_path(own, auth),
        "/models": _models_path(names, auth),
        **_open_paths(names),
    }
    for model, spec in specs.items():
        paths.update(_model_paths(names, schemas, model, spec, settings))
    return paths


def build_document(specs: Mapping[str, ModelSpec], default: str, settings: Settings) -> dict[str, Any]:
    """The whole OpenAPI document for the served models' specs (by model name) and these settings."""
    schemas, names = _component_schemas(specs)
    spec = specs[default]
    served = ", ".join(specs)
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "clinrisk: clinical risk models",
            "version": _package_version(),
            "description": f"Models served: {served}. The default ({default}): {spec.description}".strip(),
        },
        "paths": _paths(names, schemas, specs, default, settings),
        "components": {"schemas": schemas},
    }
    if settings.auth_enabled:
        document["components"]["securitySchemes"] = {
            "basicAuth": {"type": "http", "scheme": "basic"},
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key from `clinrisk user add`",
            },
        }
    return document


def _package_version() -> str:
    try:
        return version("clinrisk")
    except PackageNotFoundError:
        return "0"
