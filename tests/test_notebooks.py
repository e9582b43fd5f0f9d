"""Every notebook in notebooks/ runs top to bottom on a fresh install (nbclient, a real kernel) and fails on any
error; the notebooks in git carry no outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.get("output_type") == "error"]
    assert outputs, "the notebook showed nothing"
    if any(re.search(r"\bshow\(|%%cypher", cell.source) for cell in notebook.cells):
        html = [output.get("data", {}).get("text/html", "") for output in outputs]
        assert any("neo4j-viz-data" in text for text in html), "no graph view was drawn"
    if "plt." in "".join(cell.source for cell in notebook.cells):
        assert any("image/png" in output.get("data", {}) for output in outputs), "no plot was drawn"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebooks_in_git_have_no_outputs(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in raw["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"
