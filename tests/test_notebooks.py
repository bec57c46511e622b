"""The notebooks (notebooks/*.ipynb) run headless, top to bottom, and show what they promise; the committed
copies carry no outputs. Also the helpers they draw with (visrec.pipeline.pictures).

Each notebook runs on a copy in a temporary folder (its working directory), with its run directories and
data there (VISREC_OUTPUTS, VISREC_DATA_DIR): nothing is written into the checkout. Image features are cached
in pytest's cache folder (VISREC_FEATURE_CACHE, kept between test runs; ``pytest --cache-clear`` drops it), so
only the first run pays for the CNN. The MovieLens notebook skips without ../shared/datasets/ml-100k.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import ML100K, REPO

NOTEBOOKS = REPO / "notebooks"
CELL_TIMEOUT = 600  # seconds, per cell
# What must never reach a cell's output: Lightning's progress bars and start-up lines, and warnings.
FORBIDDEN = ("Warning", "it/s]", "Epoch 0:", "Sanity Checking", "GPU available:", "LOCAL_RANK", "| Name ")
MAX_OUTPUT_CHARS = 6000  # per cell: no pages of log


def _feature_cache(request, tmp_path: Path) -> Path:
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: a fresh folder then
    return Path(cache.mkdir("visrec-notebook-feature-cache")) if cache is not None else tmp_path / "feature_cache"


def execute(name: str, tmp_path: Path, env: dict[str, str]):
    """Run notebooks/<name> on a copy in ``tmp_path`` with ``env`` added; returns the executed notebook.
    A cell that raises fails here with nbclient's CellExecutionError (the cell and its traceback)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    work = tmp_path / "work"
    work.mkdir()
    copy = work / name
    shutil.copyfile(NOTEBOOKS / name, copy)
    notebook = nbformat.read(copy, as_version=4)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel is a child process: it inherits these
    try:
        client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                         resources={"metadata": {"path": str(work)}})
        started = time.perf_counter()
        client.execute()
        print(f"{name}: executed in {time.perf_counter() - started:.1f} s")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    nbformat.write(notebook, tmp_path / f"executed-{name}")  # for a look after a failure
    return notebook


def _env(tmp_path: Path, request) -> dict[str, str]:
    return {"VISREC_OUTPUTS": str(tmp_path / "outputs"), "VISREC_DATA_DIR": str(tmp_path / "data"),
            "VISREC_FEATURE_CACHE": str(_feature_cache(request, tmp_path))}


def output_text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", []))
    return str((output.get("data") or {}).get("text/plain", ""))


def check_quiet(notebook) -> None:
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        text = "".join(output_text(output) for output in cell.outputs)
        for forbidden in FORBIDDEN:
            assert forbidden not in text, f"cell {index} prints {forbidden!r}:\n{text[:2000]}"
        assert len(text) <= MAX_OUTPUT_CHARS, f"cell {index} prints {len(text)} characters:\n{text[:2000]}"
        count = re.search(r"(ratings|epochs|users)\b[^\n]*?\b\d+\.0000\b", text)
        assert count is None, f"cell {index} prints a count as a float: {count.group(0)!r}"


def cold_rmse(outputs: Path, runs: list[str]) -> dict[str, float]:
    """test/rmse_cold of the notebook's run directories (their metrics.json)."""
    return {run: json.loads((outputs / run / "metrics.json").read_text())["test/rmse_cold"] for run in runs}


def png_cells(notebook) -> list[int]:
    """Indices of the code cells with at least one image/png output."""
    return [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            and any("image/png" in (output.get("data") or {}) for output in cell.outputs)]


def cell_with(notebook, needle: str) -> int:
    (index,) = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and needle in cell.source]
    return index


# ---- the committed notebooks -----------------------------------------------------------------------
def test_committed_notebooks_have_no_outputs():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {p.name for p in paths} >= {"quickstart.ipynb", "movielens.ipynb"}
    for path in paths:
        notebook = json.loads(path.read_text())
        for index, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [] and cell.get("execution_count") is None, \
                    f"{path.name} cell {index}: outputs are committed (clear them: jupyter nbconvert --clear-output --inplace)"


# ---- executed ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_quickstart_notebook_runs_and_shows_its_pictures(tmp_path, request):
    default_outputs = REPO / "outputs" / "notebooks"
    existed = default_outputs.exists()
    notebook = execute("quickstart.ipynb", tmp_path, _env(tmp_path, request))
    pngs = png_cells(notebook)
    for needle in ("read_csv(run_dir / 'metrics_per_epoch.csv')", "pictures.poster_grid", "pictures.item_vector_map"):
        assert cell_with(notebook, needle) in pngs, f"no image output from the cell with {needle}"
    check_quiet(notebook)
    assert any((tmp_path / "outputs" / "quickstart").iterdir())  # the run directories went to tmp,
    assert existed or not default_outputs.exists()  # not into the checkout
    # What the cold-start section shows: the pictures cut cold-item RMSE; dealt to the wrong items they do not.
    cold = cold_rmse(tmp_path / "outputs" / "quickstart", ["none", "reg", "permuted"])
    assert cold["reg"] < 0.95 * cold["none"] and cold["reg"] < 0.95 * cold["permuted"], cold


@pytest.mark.slow
@pytest.mark.ml100k
def test_movielens_notebook_runs_and_shows_its_pictures(tmp_path, request):
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K} (../shared/datasets/ml-100k beside the repo)")
    notebook = execute("movielens.ipynb", tmp_path, {**_env(tmp_path, request), "VISREC_ML100K": str(ML100K)})
    pngs = png_cells(notebook)
    for needle in ("read_csv(run_dir / 'metrics_per_epoch.csv')", "pictures.poster_grid", "pictures.item_vector_map"):
        assert cell_with(notebook, needle) in pngs, f"no image output from the cell with {needle}"
    check_quiet(notebook)
    cold = cold_rmse(tmp_path / "outputs" / "movielens", ["cold-none", "cold-head", "cold-permuted"])
    assert cold["cold-head"] < cold["cold-none"] and cold["cold-head"] < cold["cold-permuted"], cold


def test_a_failing_cell_fails_the_execution(tmp_path, monkeypatch):
    """What the notebook tests rely on: a cell that raises stops the run with an error (not a warning)."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                               nbformat.v4.new_code_cell("raise RuntimeError('broken cell')")])
    folder = tmp_path / "nb"
    folder.mkdir()
    nbformat.write(notebook, folder / "broken.ipynb")
    monkeypatch.setattr("test_notebooks.NOTEBOOKS", folder)
    with pytest.raises(CellExecutionError, match="broken cell"):
        execute("broken.ipynb", tmp_path, {})


# ---- visrec.pipeline.pictures ---------------------------------------------------------------------
class FakeRecommender:
    """What pictures needs of a Recommender: item ids and vectors, and recommend()."""

    def __init__(self, item_ids, factors):
        self.item_ids = np.asarray(item_ids)
        self.item_factors = np.asarray(factors, dtype=np.float32)
        self.calls = []

    def recommend(self, user_ids, k=10):
        self.calls.append((list(user_ids), k))
        ids = np.array([[self.item_ids[-1 - j] for j in range(k)] for _ in user_ids], dtype=object)
        ids[:, -1] = None  # a padding slot
        return ids, np.zeros(ids.shape, dtype=np.float32)


def _run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / "img").mkdir(parents=True)
    items = ["a", "b", "c", "d", "e"]
    for item in items[:4]:  # e has no picture; d's file is missing
        if item != "d":
            Image.new("RGB", (8, 8), (40 * len(item), 0, 0)).save(run_dir / "img" / f"{item}.png")
    pd.DataFrame({"item": items, "image_path": pd.array([str(run_dir / "img" / f"{i}.png") for i in items[:4]] + [None],
                                                          dtype="string")}).to_parquet(run_dir / "item_images.parquet")
    pd.DataFrame({"user": [7, 3]}).to_parquet(run_dir / "user_map.parquet")
    pd.DataFrame({"user": [3, 3, 3, 7, 7, 7, 7],
                  "item": ["a", "b", "c", "a", "b", "c", "d"],
                  "rating": [5.0, 4.0, 2.0, 4.0, 5.0, 4.5, 5.0],
                  "part": ["train", "val", "train", "train", "train", "test", "train"]}).to_parquet(run_dir / "split.parquet")
    return run_dir


def test_pictures_gathers_rows_from_the_run(tmp_path):
    from visrec.pipeline import pictures

    run_dir = _run_dir(tmp_path)
    # user 7: a (4), b (5), d (5) in train/val at >= 4 (c is test); user 3: a (5), b (4 val).
    assert pictures.example_users(run_dir, count=5, liked=2) == [(7, ["b", "d"]), (3, ["a", "b"])]
    assert pictures.example_users(run_dir, count=5, liked=3) == [(7, ["b", "d", "a"])]
    rec = FakeRecommender(["a", "b", "c", "d", "e"], np.eye(5, 2))
    rows = pictures.poster_rows(run_dir, rec, count=2, liked=2, k=3)
    assert rec.calls == [([7, 3], 3)]
    assert [label for label, _, _ in rows] == ["user 7", "user 3"]
    assert rows[1][1] == [str(run_dir / "img" / "a.png"), str(run_dir / "img" / "b.png")]
    assert rows[0][2] == [None, str(run_dir / "img" / "d.png")]  # e (no picture), d; the padding slot left out
    grid = pictures.poster_grid(run_dir, rec, count=2, liked=2, k=3, size=16)
    assert isinstance(grid, Image.Image) and grid.width >= 16 * 4
    assert pictures.poster_rows(run_dir, rec, liked=10) == []


def test_item_vector_map_colours_items_by_picture_files(tmp_path, monkeypatch):
    from visrec.pipeline import pictures
    from visrec.tracking import media

    run_dir = _run_dir(tmp_path)
    seen = {}
    monkeypatch.setattr(media, "item_map", lambda factors, has_image, size: seen.update(has_image=has_image, size=size) or "map")
    rec = FakeRecommender(["e", "d", "c", "b", "a"], np.random.default_rng(0).normal(size=(5, 3)))
    assert pictures.item_vector_map(run_dir, rec, size=100) == "map"
    assert seen["has_image"].tolist() == [False, False, True, True, True]  # e: no path; d: file missing
    assert seen["size"] == 100
