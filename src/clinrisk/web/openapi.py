"""The OpenAPI document, generated from the same pydantic models that validate requests.

Served as OpenAPI 3.0.3, which the bundled Swagger UI (4.x) renders: pydantic's JSON Schema
(2020-12) is translated where the two differ (null types, const, numeric exclusive bounds).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from clinrisk.settings import Settings
from clinrisk.spec import ModelSpec
from clinrisk.web.schemas import (
    ErrorBody,
    FeedbackIn,
    FeedbackReceipt,
    Health,
    ModelInfo,
    PredictionResult,
    Readiness,
)

REF = "#/components/schemas/{model}"
SECURITY = [{"basicAuth": []}, {"bearerAuth": []}]
ERROR_TEXT = {
    400: "Malformed JSON",
    401: "Missing or wrong credentials",
    404: "Unknown prediction id",
    413: "Body or batch too large",
    415: "Content type is not application/json",
    501: "The model has no exact explanation method (only with ?explain=true)",
    422: "Invalid fields, each listed with its path",
    503: "No champion model is loaded",
}

EXPLAIN_PARAMETER = {
    "name": "explain",
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


def _component_schemas(spec: ModelSpec) -> tuple[dict[str, Any], dict[str, str]]:
    """Every schema under components, and the name under which each model was put."""
    record = spec.record_model
    models: list[type[BaseModel]] = [
        record,
        PredictionResult,
        FeedbackIn,
        FeedbackReceipt,
        ErrorBody,
        Health,
        Readiness,
        ModelInfo,
    ]
    refs, definitions = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    names = {m.__name__: refs[(m, "validation")]["$ref"].rsplit("/", 1)[1] for m in models}
    schemas = to_openapi30(definitions.get("$defs", {}))
    _document_aliases(schemas[names[record.__name__]], spec)
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


def _predict_path(names: dict[str, str], max_rows: int, auth: bool) -> dict[str, Any]:
    patient, result = _ref(names["Patient"]), _ref(names["PredictionResult"])
    batch = {"type": "array", "items": patient, "minItems": 1, "maxItems": max_rows}
    results = {"anyOf": [result, {"type": "array", "items": result}]}
    errors = [400, *([401] if auth else []), 413, 415, 422, 501, 503]
    summary = "Score one patient or an array of patients (same order out)"
    responses = _responses(200, results, "One result per patient", errors)
    operation = _operation(summary, responses, body={"anyOf": [patient, batch]}, secured=auth)
    operation["parameters"] = [EXPLAIN_PARAMETER]
    return {"post": operation}


def _feedback_path(names: dict[str, str], auth: bool) -> dict[str, Any]:
    errors = [400, *([401] if auth else []), 404, 413, 415, 422, 503]
    responses = _responses(201, _ref(names["FeedbackReceipt"]), "Outcome stored", errors)
    summary = "Record the observed outcome of an earlier prediction"
    return {"post": _operation(summary, responses, body=_ref(names["FeedbackIn"]), secured=auth)}


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


def _paths(names: dict[str, str], max_rows: int, auth: bool) -> dict[str, Any]:
    return {
        "/predict": _predict_path(names, max_rows, auth),
        "/feedback": _feedback_path(names, auth),
        "/model": _model_path(names, auth),
        **_open_paths(names),
    }


def build_document(spec: ModelSpec, settings: Settings) -> dict[str, Any]:
    """The whole OpenAPI document for a model spec and these settings."""
    schemas, names = _component_schemas(spec)
    names = {"Patient": names[spec.record_model.__name__], **names}
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": f"clinrisk: {spec.name} risk",
            "version": _package_version(),
            "description": spec.description,
        },
        "paths": _paths(names, settings.max_batch_rows, settings.auth_enabled),
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
