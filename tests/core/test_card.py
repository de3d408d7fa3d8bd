"""The model card: written at registration as MLflow artifacts, with slices, calibration and the gate."""

from __future__ import annotations

import re

import mlflow
import pytest

from clinrisk import registry
from clinrisk.card import render
from clinrisk.errors import RegistryError


@pytest.fixture(scope="module")
def champion_card(trained_settings):
    return registry.load_card(trained_settings, "stroke", "1")


def test_every_registered_version_has_html_markdown_and_facts(trained_settings, tmp_path):
    """The run of the version holds card/card.json, card.md and card.html."""
    run_id = registry.version_run_id(trained_settings, "stroke", "1")
    registry.client(trained_settings)
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="card", dst_path=str(tmp_path))
    names = {p.name for p in __import__("pathlib").Path(local).iterdir()}
    assert {"card.json", "card.md", "card.html"} <= names
    html = (tmp_path / "card" / "card.html").read_text()
    assert "Decision: <strong>promoted</strong>" in html  # rewritten once the gate had decided


def test_the_card_gives_data_metrics_calibration_slices_and_limits(champion_card):
    """Facts: rows and positives, Wilson-bounded holdout rates, Brier before/after, sex and age slices."""
    facts, tags, aliases = champion_card
    assert facts["data"]["rows"]["total"] == 5110 and facts["data"]["positives_holdout"] == 50
    recall = facts["holdout"]["rates"]["recall"]
    assert recall["low"] < recall["value"] < recall["high"]
    assert facts["calibration"]["brier"] < facts["calibration"]["brier_uncalibrated"]
    assert [s["name"] for s in facts["slices"]] == ["sex", "age band"]
    assert [g["group"] for g in facts["slices"][1]["groups"]] == ["<45", "45-64", "≥65"]
    assert any("bmi is missing" in limit for limit in facts["limits"])
    assert any("not a diagnosis" in limit for limit in facts["limits"])
    assert tags["gate.decision"] == "promoted" and "champion" in aliases


def test_the_html_card_shows_the_slices_with_counts_and_the_curve(champion_card):
    """The rendered card has one table per slice, a calibration SVG and the gate's reasons."""
    facts = champion_card[0]
    html = render(facts, "1", {"decision": "promoted", "reasons": ["because"], "compared_with": "none"})[
        "html"
    ]
    assert len(re.findall(r'<table class="slice"', html)) == 2
    assert "<svg" in html and "<polyline" in html and "because" in html
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)


def test_a_card_without_calibration_says_the_number_is_not_a_risk(champion_card):
    """Versions trained before calibration get a warning instead of a curve."""
    facts = {**champion_card[0], "calibration": None}
    rendered = render(facts, "7")
    assert "not a risk" in rendered["html"] and "Not calibrated" in rendered["md"]


def test_an_unknown_version_is_a_registry_error(trained_settings):
    """Asking for the card of a version that does not exist fails with the version named."""
    with pytest.raises(RegistryError, match="version 99"):
        registry.load_card(trained_settings, "stroke", "99")
