"""The exploration notebooks run from a fresh clone, and are stored without outputs."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from support import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_is_one_numbered_notebook_per_model():
    """Every spec in models/ has a numbered exploration notebook."""
    specs = {p.stem.replace("_", "-") for p in (REPO / "models").glob("*.yaml")}
    covered = {p.stem.split("-", 1)[1].removesuffix("-exploration") for p in NOTEBOOKS}
    assert specs <= covered, specs - covered
    assert all(p.stem[:2].isdigit() for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    """No stored outputs or execution counts: the repository holds code, not results."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    """Every cell runs without error in the project's own Python (ipykernel's `python3` kernel)."""
    # ipykernel's own `python3` spec says `python`, which jupyter_client runs as sys.executable
    # (this venv); a user-level spec of that name elsewhere must not take its place.
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    assert any(o.get("data", {}).get("image/png") for c in notebook.cells for o in c.get("outputs", []))
