"""Every config key a data error tells the user to set exists in the config composed for the data
config in use (data.source_args.* for data=ratings_table, data.* for movielens_100k), and every
group=option it suggests is a real option: the advice can be followed as written."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from visrec.data import DataError
from visrec.pipeline.config import instantiate_node

from conftest import CONF, compose_train

KEY = re.compile(r"(?<![\w/.-])((?:data|model|trainer)(?:\.[A-Za-z_]\w*)+)")
GROUP_OPTION = re.compile(r"(?<![\w/.-])(data/split|callbacks|data)=([A-Za-z_]\w*)")
_ABSENT = object()


def error_of(overrides: list[str], tmp_path: Path) -> tuple[DataError, object]:
    """Compose train.yaml with ``overrides``, make and set up the datamodule; return the DataError."""
    cfg = compose_train(overrides, tmp_path)
    with pytest.raises(DataError) as err:
        instantiate_node(cfg.data).setup()
    return err.value, cfg


def assert_keys_exist(message: str, cfg) -> list[str]:
    keys = [key.rstrip(".") for key in KEY.findall(message)]
    for key in keys:
        assert OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT, f"{key!r} is not in the composed config: {message}"
    for group, option in GROUP_OPTION.findall(message):
        assert (CONF / group / f"{option}.yaml").is_file(), f"{group}={option} is not an option: {message}"
    return keys


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    rows = [(f"u{u}", f"i{i}", 1 + (u * i) % 5, 1000 + 10 * u + i) for u in range(12) for i in range(10)]
    good = tmp_path / "ratings.csv"
    pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]).to_csv(good, index=False)
    dups = tmp_path / "dups.csv"
    dups.write_text(good.read_text() + "u1,i1,5,5000\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(good.read_bytes() + "u1,Caf\xe9,5,5000\n".encode("latin-1"))
    session = tmp_path / "sessions.csv"  # every user rates in one block of time: validation is all cold
    pd.DataFrame([(f"u{u}", f"i{i}", 3, 10 * u + i) for u in range(30) for i in range(10)],
                 columns=["user", "item", "rating", "timestamp"]).to_csv(session, index=False)
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("user,item,rating\n" + "".join(f"u,i{i},3\n" for i in range(12)))
    return {"good": good, "dups": dups, "latin": latin, "session": session, "tiny": tiny}


TABLE_CASES = {
    "temporal without timestamps": ("good", ["data/split=temporal"], "data.source_args.timestamp_col"),
    "predefined without test table": ("good", ["data/split=predefined"], "data.source_args.test_path"),
    "duplicates=error": ("dups", ["data.source_args.duplicates=error"], "data.source_args.duplicates"),
    "bad duplicates policy": ("good", ["data.source_args.duplicates=first"], "data.source_args.duplicates"),
    "latin-1 file": ("latin", [], "data.source_args.encoding"),
    "unknown encoding": ("good", ["data.source_args.encoding=klingon"], "data.source_args.encoding"),
    "half a rating range": ("good", ["data.source_args.rating_min=1"], "data.source_args.rating_min"),
    "infinite rating range": ("good", ["data.source_args.rating_min=1", "data.source_args.rating_max=inf"], "data.source_args.rating_max"),
    "separator": ("good", ["data.source_args.sep=::"], "data.source_args.sep"),
    "batch size": ("good", ["data.batch_size=0"], "data.batch_size"),
    "eval batch size": ("good", ["data.eval_batch_size=0"], "data.eval_batch_size"),
    "workers": ("good", ["data.num_workers=-1"], "data.num_workers"),
    "val_ratio too big": ("good", ["data.val_ratio=1.5"], "data.val_ratio"),
    "val_ratio negative": ("good", ["data.val_ratio=-0.1"], "data.val_ratio"),
    "test_ratio": ("good", ["data.split.test_ratio=1.5"], "data.split.test_ratio"),
    "negative filter": ("good", ["data.min_item_ratings=-1"], "data.min_item_ratings"),
    "filters drop everything": ("good", ["data.min_user_ratings=1000"], "data.min_user_ratings"),
    "empty validation": ("tiny", [], "data.val_ratio"),
    "all-cold validation": ("session", ["data.source_args.timestamp_col=timestamp", "data/split=temporal", "data.val_ratio=0.04"],
                            "model.scheduler"),
    "empty test part": ("tiny", ["data.split.test_ratio=0.01"], "data.split.test_ratio"),
    "per-user temporal without timestamps": ("good", ["data/split=per_user_temporal"], "data.source_args.timestamp_col"),
    "test_ratio and leave_last_n": ("good", ["data/split=per_user_temporal", "data.split.leave_last_n=1"], "data.split.leave_last_n"),
    "leave-one-out with all-cold validation": ("session", ["data.source_args.timestamp_col=timestamp", "data/split=per_user_temporal",
                                                           "data.split.test_ratio=null", "data.split.leave_last_n=1"], "data.split.val_last_n"),
    "warm_test_ratio": ("good", ["data/split=cold_item", "data.split.warm_test_ratio=1"], "data.split.warm_test_ratio"),
}


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_ratings_table_messages_name_keys_that_exist(tmp_path, files, case):
    name, overrides, expected = TABLE_CASES[case]
    error, cfg = error_of(["data=ratings_table", f"data.path={files[name]}", *overrides], tmp_path)
    keys = assert_keys_exist(str(error), cfg)
    assert expected in keys, str(error)


@pytest.fixture
def fake_ml(tmp_path) -> Path:
    root = tmp_path / "ml"
    root.mkdir()
    (root / "u.item").write_bytes(b"".join(b"%d|Film|01-Jan-1995||url" % i + b"|0" * 19 + b"\n" for i in range(1, 9)))
    (root / "u.user").write_text("".join(f"{u}|24|M|x|1\n" for u in range(1, 9)))
    base = [(u, i) for u in range(1, 9) for i in range(1, 9) if (u + i) % 3]
    (root / "u1.base").write_text("".join(f"{u}\t{i}\t{1 + (u * i) % 5}\t{100 + 10 * u + i}\n" for u, i in base))
    (root / "u1.test").write_text("".join(f"{u}\t{i}\t3\t{900 + u}\n" for u, i in [(1, 2), (2, 1), (3, 3), (4, 2)]))
    return root


ML_CASES = {
    "fold": (["data.fold=9"], "data.fold"),
    "bad duplicates policy": (["data.duplicates=first"], "data.duplicates"),
    "batch size": (["data.batch_size=-5"], "data.batch_size"),
    "val_ratio": (["data.val_ratio=1"], "data.val_ratio"),
    "filters drop everything": (["data.min_item_ratings=500"], "data.min_item_ratings"),
    "empty validation": (["data.val_ratio=0.001"], "data.val_ratio"),
}


@pytest.mark.parametrize("case", list(ML_CASES))
def test_movielens_messages_name_keys_that_exist(tmp_path, fake_ml, case):
    overrides, expected = ML_CASES[case]
    error, cfg = error_of(["data=movielens_100k", f"data.root={fake_ml}", "data.images=null", *overrides], tmp_path)
    keys = assert_keys_exist(str(error), cfg)
    assert expected in keys, str(error)


def test_movielens_duplicates_error_names_data_duplicates(tmp_path, fake_ml):
    (fake_ml / "u1.base").write_text((fake_ml / "u1.base").read_text() + "1\t1\t5\t999\n")
    error, cfg = error_of(["data=movielens_100k", f"data.root={fake_ml}", "data.images=null", "data.duplicates=error"], tmp_path)
    assert "data.duplicates" in assert_keys_exist(str(error), cfg) and "source_args" not in str(error)


@pytest.mark.parametrize("override, expected", [("data.batch_size=0", "data.batch_size"), ("data.val_ratio=-0.1", "data.val_ratio"),
                                                ("data.min_user_ratings=-3", "data.min_user_ratings")])
def test_synthetic_messages_name_keys_that_exist(tmp_path, override, expected):
    error, cfg = error_of([override], tmp_path)
    assert expected in assert_keys_exist(str(error), cfg)


@pytest.mark.parametrize("override, key", [("data.batch_size=0", "data.batch_size"), ("data.val_ratio=1.5", "data.val_ratio"),
                                           ("data.split.test_ratio=-1", "data.split.test_ratio")])
def test_train_stops_with_the_data_error_itself_before_training(tmp_path, override, key):
    from visrec.pipeline.training import train

    # The message starts with the key (no "<data>:" where no file is at fault); not Hydra's InstantiationException.
    with pytest.raises(DataError, match=rf"^{key.replace('.', '[.]')} must be"):
        train(compose_train(["model.visual_mode=none", override], tmp_path))
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
