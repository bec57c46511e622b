"""Loading id maps and bundles starts no pyarrow worker thread, so a serving or evaluation process
cannot abort at exit tearing one down (apache/arrow#34314: "terminate called without an active
exception", exit -6, seen once in CI in the bundle-serving subprocess).

Deterministic: each check runs in a fresh interpreter and compares the native thread count
(/proc/self/task) before and after the load; it does not wait for the rare abort itself.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visrec.data.idmap import IdMap

from test_bundle_security import write_small_bundle

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to count threads")

COUNT = "import os\ndef threads():\n    return len(os.listdir('/proc/self/task'))\n"


def threads_started_by(setup: str, load: str) -> int:
    """Native threads that ``load`` starts in a fresh interpreter after ``setup`` has run. The interpreter leaves
    by ``os._exit`` once the count is printed: a process that did start pyarrow's pool (the reference check) may
    otherwise abort at exit tearing it down (the bug these tests guard against; -6 in 1 of ~40 runs), which
    would fail the check for a reason it does not measure."""
    code = (f"{COUNT}{setup}\nbefore = threads()\n{load}\nprint(threads() - before)\n"
            "import sys\nsys.stdout.flush()\nos._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_the_check_sees_pyarrow_threads_when_the_dataset_reader_starts_them(tmp_path):
    """The measure itself: pandas.read_parquet on an open file starts pool workers here."""
    path = tmp_path / "map.parquet"
    pd.DataFrame({"raw_id": np.arange(1000).astype(str), "index": np.arange(1000)}).to_parquet(path)
    started = threads_started_by("import pandas as pd, pyarrow.parquet",
                                 f"with open({str(path)!r}, 'rb') as f: pd.read_parquet(f)")
    assert started > 0


def test_an_id_map_loads_on_the_calling_thread_only(tmp_path):
    path = tmp_path / "user_map.parquet"
    IdMap(np.arange(1000).astype(str).astype(object), name="user").save(path)
    started = threads_started_by("import pyarrow.parquet\nfrom visrec.data.idmap import IdMap",
                                 f"assert len(IdMap.load({str(path)!r}, name='user')) == 1000")
    assert started == 0


def test_a_bundle_loads_and_serves_on_the_calling_thread_only(tmp_path):
    bundle = write_small_bundle(tmp_path / "bundle")
    started = threads_started_by(
        "import pyarrow.parquet\nimport numpy as np\nfrom visrec.serving import Recommender\nnp.ones((64, 64)) @ np.ones((64, 64))",
        f"rec = Recommender.load({str(bundle)!r})\nids, _ = rec.recommend([rec.user_ids[0]], k=3)\nassert ids.shape == (1, 3)")
    assert started == 0
