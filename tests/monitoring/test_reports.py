"""Evidently reports on the real stroke data: column mapping, drift verdicts, quality, offline HTML."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from clinrisk.monitoring import reports, store
from clinrisk.monitoring.schema import Floors
from monitoring.test_report_pages import summary as monitor_summary

FLOORS = Floors(drift_share=0.2, recall=0.5, precision=0.15)
REMOTE_RESOURCE = re.compile(r"<(script|link|img|iframe)[^>]+(src|href)=[\"']?(https?:)?//", re.IGNORECASE)


def with_predictions(frame, outcome_column=None):
    """Rows with a stand-in model's outputs: older patients score higher; its threshold is 0.45, not 0.5."""
    scored = frame.copy()
    scored["outcome"] = frame[outcome_column] if outcome_column else float("nan")
    scored["probability"] = (frame["age"] / 130).clip(0, 1)
    scored["prediction"] = (scored["probability"] >= 0.45).astype(int)
    return scored


@pytest.fixture(scope="module")
def reference(raw_stroke):
    return with_predictions(raw_stroke.sample(2000, random_state=1), "stroke")


@pytest.fixture(scope="module")
def drift_snapshot(stroke_spec, drifted_sample, reference):
    current = with_predictions(drifted_sample, "stroke")
    return reports.monitoring_snapshot(stroke_spec, current, reference, current, FLOORS, {"title": "drifted"})


@pytest.fixture(scope="module")
def still_snapshot(stroke_spec, undrifted_sample, reference):
    current = with_predictions(undrifted_sample)
    return reports.monitoring_snapshot(stroke_spec, current, reference, None, FLOORS, {"title": "undrifted"})


def test_column_mapping_comes_from_the_spec(stroke_spec):
    """It maps numeric features as numerical and categories and 0/1 flags as categorical."""
    definition = reports.data_definition(stroke_spec, with_quality=False)
    assert definition.numerical_columns == ["age", "avg_glucose_level", "bmi"]
    assert set(definition.categorical_columns) == {
        "gender",
        "hypertension",
        "heart_disease",
        "ever_married",
        "work_type",
        "Residence_type",
        "smoking_status",
    }


def test_older_more_diabetic_patients_are_drift(drift_snapshot):
    """It flags exactly age and glucose as drifted, and the drifted-share test fails."""
    facts = reports.facts(drift_snapshot)
    assert set(facts.drifted_columns) == {"age", "avg_glucose_level"}
    assert facts.drift_share == pytest.approx(0.2)
    assert any("Drifted Columns" in name for name in facts.failed_tests)


def test_each_column_has_a_score_method_and_threshold(drift_snapshot, stroke_spec):
    """It reports every feature's drift score with the method and threshold that judged it."""
    facts = reports.facts(drift_snapshot)
    assert set(facts.column_drift) == set(stroke_spec.feature_names)
    assert (
        facts.column_drift["age"]["method"] == "wasserstein" and facts.column_drift["age"]["threshold"] == 0.1
    )
    assert facts.column_drift["gender"]["method"] == "jensenshannon"


def test_quality_uses_the_models_decisions_not_a_half_cut(drift_snapshot, drifted_sample):
    """Evidently's recall and precision are those of the logged decisions at the model's threshold."""
    current = with_predictions(drifted_sample, "stroke")
    flagged, positive = current["prediction"] == 1, current["outcome"] == 1
    facts = reports.facts(drift_snapshot)
    assert facts.precision == pytest.approx((flagged & positive).sum() / flagged.sum())
    assert facts.recall == pytest.approx((flagged & positive).sum() / positive.sum())
    at_half = current["probability"] >= 0.5
    assert facts.recall != pytest.approx((at_half & positive).sum() / positive.sum())


def test_quality_tests_fail_only_significantly_below_the_floors(drift_snapshot, drifted_sample, stroke_spec):
    """The tests' values are the lowest rates whose Wilson interval still reaches each floor."""
    current = with_predictions(drifted_sample, "stroke")
    recall, precision = reports.quality_test_values(current, FLOORS, stroke_spec)
    assert 0 < recall < FLOORS.recall and 0 < precision < FLOORS.precision
    names = " ".join(t["name"] for t in drift_snapshot.dict()["tests"])
    assert f"Recall metric: Greater or Equal {recall:.3f}" in names
    assert f"Precision metric: Greater or Equal {precision:.3f}" in names


def test_a_sample_of_the_same_population_is_not_drift(still_snapshot):
    """It finds no drifted column and no failed test in an unchanged sample without outcomes."""
    facts = reports.facts(still_snapshot)
    assert facts.drifted_columns == {} and facts.failed_tests == []
    assert facts.recall is None and facts.precision is None


def test_saved_report_is_self_contained_with_its_header(still_snapshot, tmp_path):
    """It saves HTML that loads nothing from the network, with our header on top, and the JSON."""
    html, json_path = reports.save(still_snapshot, tmp_path, '<div id="clinrisk-header">stroke v1</div>')
    text = html.read_text()
    assert REMOTE_RESOURCE.search(text) is None
    assert "@import url(http" not in text
    assert text.index("<body>") < text.index('id="clinrisk-header"') < text.index('<div id="root_metric')
    assert '"metrics"' in json_path.read_text()


def test_snapshots_go_into_a_workspace_evidently_ui_can_browse(still_snapshot, tmp_path):
    """It stores snapshots in one project per model, reopenable from the workspace directory."""
    first = reports.add_to_workspace(tmp_path, "clinrisk-stroke", still_snapshot)
    second = reports.add_to_workspace(tmp_path, "clinrisk-stroke", still_snapshot)
    assert set(reports.workspace_runs(tmp_path, "clinrisk-stroke")) == {first, second}


def _blank(frame, column, value=float("nan")):
    changed = frame.copy()
    changed[column] = value
    return changed


# (name, current, reference) builders: every kind of column Evidently cannot measure drift on.
AWKWARD = {
    "no bmi in the window": (lambda c, r: (_blank(c, "bmi"), r), "bmi", "no value in the current window"),
    "no bmi in the reference": (lambda c, r: (c, _blank(r, "bmi")), "bmi", "no value in the reference"),
    "no bmi anywhere": (lambda c, r: (_blank(c, "bmi"), _blank(r, "bmi")), "bmi", "no value in the current"),
    "one bmi in the window": (
        lambda c, r: (_blank(c, "bmi").assign(bmi=[30.0] + [float("nan")] * (len(c) - 1)), r),
        "bmi",
        "a single value in the current window",
    ),
    "a single-row window": (lambda c, r: (c.head(1), r), "age", "a single value in the current window"),
    "a single-row reference": (lambda c, r: (c, r.head(1)), "age", "a single value in the reference"),
    "a constant reference age": (
        lambda c, r: (c, _blank(r, "age", 50.0)),
        "age",
        "the reference is constant (50)",
    ),
}


@pytest.mark.parametrize("case", list(AWKWARD))
def test_columns_evidently_cannot_measure_are_reported_not_crashed_on(
    stroke_spec, undrifted_sample, reference, case
):
    """Empty, single-value and constant-reference columns: drift 'not computable', the rest measured."""
    build, column, note = AWKWARD[case]
    current, ref = build(with_predictions(undrifted_sample), reference)
    snapshot = reports.monitoring_snapshot(stroke_spec, current, ref, None, FLOORS, {"title": case})
    health = reports.column_health(stroke_spec, current, ref)
    assert health[column]["drift"].startswith("not computable: " + note)
    found = reports.facts(snapshot)
    assert column not in found.column_drift
    measured = {c for c, h in health.items() if h["drift"] is None}
    assert set(found.column_drift) == measured
    assert (found.drift_share is None) == (not measured)  # a single row: no column is measurable


def test_a_column_missing_from_the_whole_window_is_flagged_when_the_reference_has_it(
    stroke_spec, undrifted_sample, reference
):
    """100 % missing in the window is reported, and flagged only if the reference had values."""
    current = with_predictions(_blank(undrifted_sample, "bmi"))
    health = reports.column_health(stroke_spec, current, reference)
    assert health["bmi"]["missing_current"] == 1.0 and health["bmi"]["flagged"] is True
    assert 0 < health["bmi"]["missing_reference"] < 1
    assert not any(h["flagged"] for c, h in health.items() if c != "bmi")
    nothing_either = reports.column_health(stroke_spec, current, _blank(reference, "bmi"))
    assert nothing_either["bmi"]["missing_current"] == 1.0 and nothing_either["bmi"]["flagged"] is False


def test_each_model_has_its_own_evidently_project_and_index_section(still_snapshot, tmp_path):
    """Two models' reports go to two Evidently projects (`clinrisk-<model>`) and two sections of
    the index, each listing only its own model's reports."""
    now = datetime(2026, 3, 2, 6, tzinfo=UTC)
    for model in ("stroke", "diabetes"):
        summary = monitor_summary(model=model)
        store.publish(tmp_path / "reports", tmp_path / "workspace", still_snapshot, summary, now)
    for model in ("stroke", "diabetes"):
        assert len(reports.workspace_runs(tmp_path / "workspace", f"clinrisk-{model}")) == 1
    html = (tmp_path / "reports" / "index.html").read_text()
    in_order = [
        'id="model-diabetes"',
        "diabetes/20260302T060000Z/report.html",
        'id="model-stroke"',
        "stroke/20260302T060000Z/report.html",
    ]
    assert [html.index(text) for text in in_order] == sorted(html.index(text) for text in in_order)
    assert "<code>clinrisk-diabetes</code>" in html and "<code>clinrisk-stroke</code>" in html
