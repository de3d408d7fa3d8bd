"""Fixtures shared by the model-core tests."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from clinrisk.cli import main


@pytest.fixture
def run(fast_settings, monkeypatch):
    """Invoke the CLI on the fast spec's state directory; returns (exit code, output, last JSON line)."""
    monkeypatch.setenv("CLINRISK_HOME", str(fast_settings.home))
    monkeypatch.setenv("CLINRISK_SPEC_DIR", str(fast_settings.spec_dir))

    def invoke(*args: str):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        return result.exit_code, result.output, json.loads(lines[-1]) if lines else None

    return invoke
