"""Output that cannot be written (issue 29, kind 4): a full disk (ENOSPC), a file-size limit or quota
(EFBIG, short writes), an unwritable folder. Export, evaluate.py and train.py end with one line naming
the file and the reason, exit with status 2 as for a DataError, and leave what was there as it was: no
half-written bundle or report, no empty report folder, no temporary files.

The file-size limit is real (``RLIMIT_FSIZE`` in a child process, as ``ulimit -f`` sets it: every write
past 1 KiB fails); a full disk is an OSError(ENOSPC) raised by the writer, deterministic either way."""
from __future__ import annotations

import errno
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visrec.pipeline.evaluation import evaluate_run
from visrec.pipeline.exporting import export_run
from visrec.pipeline.training import train
from visrec.serving import Recommender

from conftest import REPO, compose_train
from test_evaluate import compose_evaluate

SPACE_HINT = "(disk full, quota or file-size limit?)"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A trained run with no report and no bundle yet."""
    tmp = tmp_path_factory.mktemp("bad_output")
    train(compose_train(["model.visual_mode=none", "trainer.max_epochs=2", "evaluate=false"], tmp))
    return tmp / "run"


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # as `ulimit -f 1`: writes past 1 KiB fail


def _run_limited(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``args`` under a 1 KiB file-size limit (the pipes that catch stdout/stderr are not files: not limited)."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _hidden(folder: Path) -> list[str]:
    """Temporary names (``.<name>.*.tmp``, ``.<name>.old-*``) left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _one_line(stderr: str, prefix: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    return lines[0]


def test_export_under_a_file_size_limit_names_the_file_and_leaves_nothing(run_dir, tmp_path):
    out = tmp_path / "bundle"
    done = _run_limited([sys.executable, "-m", "visrec.export", str(run_dir), "--out", str(out)], cwd=REPO)
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr, f"export: cannot write {out}/")
    assert line.endswith(f"{SPACE_HINT}; nothing written"), line
    assert "bytes could be written" in line or "File too large" in line  # numpy's short write, or EFBIG
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_on_a_full_disk_keeps_the_earlier_bundle(run_dir, tmp_path, monkeypatch):
    out = export_run(run_dir, out_dir=tmp_path / "bundle")
    before = _files(out)
    real_save = np.save
    calls = []

    def save_until_full(file, array, **kwargs):
        calls.append(file)
        if len(calls) == 3:  # the disk fills up while the third array is written
            real_save(file, array[: len(array) // 2], **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(file, array, **kwargs)

    monkeypatch.setattr(np, "save", save_until_full)
    with pytest.raises(Exception) as info:
        export_run(run_dir, out_dir=out)
    name = Path(calls[2]).name
    assert str(info.value) == (f"cannot write {out / name}: No space left on device {SPACE_HINT}; "
                               f"nothing written; the bundle at {out} is unchanged")
    assert _files(out) == before and _hidden(tmp_path) == []
    assert len(Recommender.load(out).item_ids) > 0


def test_evaluate_under_a_file_size_limit_names_the_file_and_leaves_no_report_folder(run_dir, tmp_path):
    done = _run_limited([sys.executable, str(REPO / "evaluate.py"), f"run_dir={run_dir}", "log_to_run_logger=false"], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr, f"evaluate.py: cannot write {run_dir}/eval/best_test_all/")
    assert f"File too large {SPACE_HINT}; nothing written" in line, line
    assert not (run_dir / "eval").exists()  # neither the report folder nor eval/ created for it
    assert _hidden(run_dir) == []


def test_evaluation_on_a_full_disk_keeps_the_earlier_report(run_dir, monkeypatch):
    cfg = compose_evaluate(run_dir, ["log_to_run_logger=false"])
    evaluate_run(cfg)
    report = run_dir / "eval" / "best_test_all"
    before = _files(report)

    def full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1")  # a first block made it to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    try:
        with pytest.raises(Exception) as info:
            evaluate_run(cfg)
        assert str(info.value) == (f"cannot write {report / 'per_user.parquet'}: No space left on device {SPACE_HINT}; "
                                   f"nothing written; the report at {report} is unchanged")
        assert _files(report) == before and _hidden(report.parent) == []
    finally:
        monkeypatch.undo()
        import shutil

        shutil.rmtree(run_dir / "eval")


TRAIN_WITH_A_FULL_DISK = """
import errno, pathlib, runpy, sys
real_write_text = pathlib.Path.write_text
def write_text(self, *args, **kwargs):
    if self.name.startswith(".metrics.json."):  # the run's metrics.json, under its temporary name
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_write_text(self, *args, **kwargs)
pathlib.Path.write_text = write_text
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def test_train_cli_names_the_result_it_could_not_write(tmp_path):
    rng = np.random.default_rng(0)
    ratings = pd.DataFrame({"user": np.repeat([f"u{u}" for u in range(20)], 8),
                            "item": [f"i{i}" for u in range(20) for i in rng.choice(15, 8, replace=False)],
                            "rating": rng.integers(1, 6, 160)})
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", TRAIN_WITH_A_FULL_DISK, "model=biased_mf", "model.visual_mode=none", "data=ratings_table",
                           f"data.path={tmp_path / 'ratings.csv'}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                           "evaluate=false", "logger=none", f"hydra.run.dir={run}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    line = done.stderr.strip().splitlines()[-1]  # after Lightning's own messages: the last line, alone
    assert line == f"train.py: cannot write {run / 'metrics.json'}: No space left on device {SPACE_HINT}; nothing written"
    assert not (run / "metrics.json").exists() and [p for p in _hidden(run) if p != ".hydra"] == []


TRAIN_WITH_A_FULL_DISK_AT_THE_SECOND_CHECKPOINT = """
import errno, runpy, sys
from fsspec.implementations.local import LocalFileOpener
real_write, calls = LocalFileOpener.write, []
def write(self, data):
    if str(self.path).endswith(".ckpt"):
        calls.append(self.path)
        if len(calls) > 1:  # the first checkpoint is written; the disk is full from the second on
            raise OSError(errno.ENOSPC, "No space left on device")
    return real_write(self, data)
LocalFileOpener.write = write
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def test_a_checkpoint_that_cannot_be_written_stops_the_run_with_one_line_and_keeps_the_last_good_one(tmp_path):
    """A full disk during Lightning's own checkpoint write (issue 29, kind 4): one line naming the checkpoint file,
    exit 2, the checkpoint written before intact and loadable, no temporary file left in checkpoints/."""
    import torch

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", TRAIN_WITH_A_FULL_DISK_AT_THE_SECOND_CHECKPOINT, "model.visual_mode=none",
                           "trainer.max_epochs=4", "trainer.enable_progress_bar=false", "evaluate=false", "logger=none",
                           f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"train.py: cannot write {run / 'checkpoints'}/"), line
    assert f"No space left on device {SPACE_HINT}; the checkpoint there before (if any) is unchanged" in line, line
    written = sorted((run / "checkpoints").iterdir())
    assert len(written) == 1 and not written[0].name.startswith("."), written
    torch.load(written[0], map_location="cpu", weights_only=True)  # the one written before is whole


@pytest.mark.parametrize("error, reason", [
    (OSError("1920 requested and 224 written"), f"only 224 of 1920 bytes could be written {SPACE_HINT}"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), f"Disk quota exceeded {SPACE_HINT}"),
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied (is the folder writable?)"),
    (OSError(errno.EROFS, "Read-only file system"), "Read-only file system (is the folder writable?)"),
])
def test_the_reason_says_what_to_check(tmp_path, error, reason):
    from visrec.utils.atomic import write_text_atomic

    target = tmp_path / "new" / "deeper" / "notes.txt"

    def fail(self, *args, **kwargs):
        raise error

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "write_text", fail)
        with pytest.raises(Exception) as info:
            write_text_atomic(target, "x")
    assert str(info.value) == f"cannot write {target}: {reason}; nothing written"
    assert list(tmp_path.iterdir()) == []  # the folders made for it are gone again
