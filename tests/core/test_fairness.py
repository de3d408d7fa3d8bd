"""Fairness slices: groups from the spec, counts that add up, Wilson intervals, gaps beyond noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinrisk.errors import SpecError
from clinrisk.fairness import clear_gaps, group_labels, slice_report, wilson
from clinrisk.spec import SliceSpec, load_spec


def test_the_stroke_spec_declares_sex_and_age_bands(stroke_spec):
    """Slices come from the spec: sex, and age bands <45, 45-64, ≥65."""
    assert [(s.name, s.feature) for s in stroke_spec.slices] == [("sex", "gender"), ("age band", "age")]
    assert stroke_spec.slices[1].labels == ["<45", "45-64", "≥65"]


@pytest.mark.parametrize(
    ("age", "band"),
    [(0.08, "<45"), (44.9, "<45"), (45, "45-64"), (64.99, "45-64"), (65, "≥65"), (None, "missing")],
)
def test_age_bands_are_left_closed(stroke_spec, age, band):
    """A 45-year-old is in 45-64 and a 65-year-old in ≥65; a missing value has its own group."""
    assert group_labels(stroke_spec.slices[1], pd.Series([age], dtype=float)).iloc[0] == band


def test_groups_add_up_to_the_whole_and_carry_intervals(stroke_spec, raw_stroke):
    """Per slice, group counts sum to all rows; every rate lies inside its own interval."""
    rng = np.random.default_rng(0)
    y_true = raw_stroke["stroke"].to_numpy()
    y_pred = rng.integers(0, 2, len(raw_stroke))
    for item in slice_report(stroke_spec, raw_stroke, y_true, y_pred):
        groups = item["groups"]
        assert sum(g["n"] for g in groups) == len(raw_stroke)
        assert sum(g["tp"] for g in groups) == int(((y_true == 1) & (y_pred == 1)).sum())
        for group in groups:
            for rate in ("recall", "precision", "flagged_share"):
                low, high = group[f"{rate}_ci"]
                if group[rate] is None:  # e.g. the one patient of gender Other had no stroke
                    assert low is high is None
                else:
                    assert low <= group[rate] <= high


def test_a_gap_beyond_noise_is_reported_and_one_within_it_is_not(stroke_spec):
    """A model that flags only the old has a clear recall gap by age; a coin flip by sex does not."""
    ages = np.r_[np.full(400, 30.0), np.full(400, 70.0)]
    frame = pd.DataFrame({"age": ages, "gender": np.tile(["Female", "Male"], 400)})
    y_true = np.tile([1, 1, 0, 0, 0, 0, 0, 0], 100)
    y_pred = (ages >= 65).astype(int)
    sentences = clear_gaps(slice_report(stroke_spec, frame, y_true, y_pred))
    assert any(s.startswith("age band: recall") and "≥65 than for <45" in s for s in sentences)
    assert not any(s.startswith("sex:") for s in sentences)


def test_an_empty_denominator_gives_no_rate():
    """A group nobody was flagged in has no precision and no interval, not a division error."""
    assert wilson(0, 0) == (None, None)
    low, high = wilson(0, 6)
    assert low == 0 and 0.3 < high < 0.5


@pytest.mark.parametrize(
    ("slice_yaml", "message"),
    [
        ("- {name: x, feature: nope}", "unknown feature"),
        ("- {name: x, feature: age}", "numeric features need bands"),
        ("- {name: x, feature: gender, bands: [1]}", "numeric features need bands"),
        ("- {name: x, feature: age, bands: [65, 45]}", "increase strictly"),
        ("- {name: x, feature: age, bands: [45], labels: [a]}", "one label more"),
    ],
)
def test_a_bad_slice_names_itself(tmp_path, slice_yaml, message):
    """A slice on an unknown feature or with inconsistent bands fails with the slice named."""
    from support import REPO

    text = (REPO / "models" / "stroke.yaml").read_text().split("\nslices:")[0]
    path = tmp_path / "stroke.yaml"
    path.write_text(f"{text}\nslices:\n  {slice_yaml}\n")
    with pytest.raises(SpecError, match=message):
        load_spec(path)
    assert SliceSpec(name="ok", feature="gender").bands is None
