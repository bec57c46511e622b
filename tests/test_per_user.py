"""Per-user metrics beside metrics.json (issue 28, part 2's input): per_user.parquet holds, for every scorer,
segment and ranked user (raw id), the values each reported ranking metric averages."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from visrec.pipeline.training import train

from conftest import compose_train


def test_per_user_values_average_to_the_reported_metrics(tmp_path):
    train(compose_train(["model=ials", "trainer.max_epochs=2", "logger=none"], tmp_path))
    (report,) = (tmp_path / "run" / "eval").glob("*")
    rows = pd.read_parquet(report / "per_user.parquet")
    metrics = json.loads((report / "metrics.json").read_text())["metrics"]
    assert set(rows.scorer) == {"model", "popularity"} and {"warm", "warm_items_21+"} <= set(rows.segment)
    assert rows.user.str.startswith("u").all()  # raw ids, not indices
    assert not rows.duplicated(["scorer", "segment", "user"]).any()
    for (scorer, segment), group in rows.groupby(["scorer", "segment"]):
        assert len(group) == metrics[f"{scorer}/{segment}/users_evaluated"]
        for metric in ("ndcg@10", "recall@5", "precision@20", "f1@10"):
            np.testing.assert_allclose(group[metric].mean(), metrics[f"{scorer}/{segment}/{metric}"], rtol=1e-9)
