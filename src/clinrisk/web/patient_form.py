"""The patient form, generated from the spec: fields to draw, and form text turned into a record.

Form values arrive as text. They are converted to the spec's types here (an empty box is
"missing"), then validated by the same pydantic model as `POST /predict`, so the page shows
the API's own messages next to the field that caused them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ValidationError

from clinrisk.spec import FeatureSpec, ModelSpec

BINARY_CHOICES = (("0", "No"), ("1", "Yes"))
MISSING_TEXT = "Field required"


@dataclass(frozen=True)
class FormField:
    """One input of the form: name, widget kind, choices, range and help text."""

    name: str
    kind: str  # "number" or "select"
    choices: tuple[tuple[str, str], ...]
    minimum: float | None
    maximum: float | None
    required: bool
    help: str


def _help(feature: FeatureSpec) -> str:
    parts = [(feature.description or "").rstrip(".")]
    if feature.type == "numeric" and feature.min is not None and feature.max is not None:
        parts.append(f"from {feature.min:g} to {feature.max:g}")
    if feature.nullable:
        parts.append("leave empty if unknown")
    return "; ".join(p for p in parts if p)


def form_fields(spec: ModelSpec) -> list[FormField]:
    """One FormField per feature, in the spec's order."""
    fields = []
    for name, feature in spec.features.items():
        if feature.type == "categorical":
            choices = tuple((c, c) for c in feature.categories or [])
        elif feature.type == "binary":
            choices = BINARY_CHOICES
        else:
            choices = ()
        kind = "number" if feature.type == "numeric" else "select"
        fields.append(
            FormField(name, kind, choices, feature.min, feature.max, not feature.nullable, _help(feature))
        )
    return fields


def _convert(feature: FeatureSpec, text: str) -> tuple[Any, str | None]:
    """The typed value of one box, or an error message in the API's words."""
    if text == "":
        return None, None if feature.nullable else MISSING_TEXT
    if feature.type == "categorical":
        return text, None
    try:
        number = float(text)
    except ValueError:
        return None, "Input should be a valid number"
    if feature.type == "binary":
        return (int(number), None) if number in (0, 1) else (None, "Input should be 0 or 1")
    return number, None


def parse_form(
    spec: ModelSpec, record_model: type[BaseModel], form
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The validated record (canonical names), or None and one message per offending field."""
    record, errors = {}, {}
    for name, feature in spec.features.items():
        value, problem = _convert(feature, form.get(name, "").strip())
        if problem:
            errors[name] = problem
        elif value is not None:
            record[name] = value
    if errors:
        return None, errors
    try:
        return record_model.model_validate(record, strict=True).model_dump(), {}
    except ValidationError as exc:
        return None, {
            str(e["loc"][0]) if e["loc"] else "form": e["msg"] for e in exc.errors(include_url=False)
        }


def one_in(rate: float | None) -> str:
    """0.166 -> "1 in 6"; 0.8 -> "4 in 5" (the nearest fraction with a denominator up to 10)."""
    if not rate:
        return "none"
    near = Fraction(rate).limit_denominator(10)
    if near.numerator == 0:
        return "fewer than 1 in 10"
    return f"{near.numerator} in {near.denominator}"


def holdout_terms(info: dict[str, Any], label: str) -> str | None:
    """What the decision means, in the model's own holdout figures."""
    metrics = info.get("holdout_metrics") or {}
    if "precision" not in metrics or "recall" not in metrics:
        return None
    return (
        f"Among patients flagged by this model, about {one_in(metrics['precision'])} had {label}; "
        f"of patients who had {label}, it flags about {one_in(metrics['recall'])}."
    )


def _shown(value: Any) -> str:
    """A value as a clinician would write it: 67 not 67.0, "missing" when missing."""
    if value is None:
        return "missing"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def bar_chart(reasons: list[dict[str, Any]], top: int = 5, width: int = 360, row: int = 26) -> dict[str, Any]:
    """Geometry of a horizontal bar chart of the largest contributions, centred on zero."""
    shown = reasons[:top]
    largest = max((abs(r["contribution"]) for r in shown), default=0) or 1.0
    half = width / 2
    bars = []
    for index, reason in enumerate(shown):
        length = abs(reason["contribution"]) / largest * (half - 10)
        up = reason["contribution"] > 0
        bars.append(
            {
                **reason,
                "shown": _shown(reason["value"]),
                "x": half if up else half - length,
                "y": index * row + 4,
                "width": max(length, 1.0),
                "up": up,
            }
        )
    return {"width": width, "height": len(shown) * row + 8, "middle": half, "bars": bars, "row": row}
