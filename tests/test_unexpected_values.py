"""Input values the readers did not expect (issue 29, kind 5): time-zone-aware and ISO 8601 timestamps
read as instants, messages naming the file's own column, item ids too long for a file name, one
number spelled two ways in two files, and pictures whose EXIF orientation turns them."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from visrec.data import DataError, RatingsFile
from visrec.features import BackboneSpec, create_backbone, extract_item_features
from visrec.features.cache import file_digest
from visrec.features.images import MISSING, load_rgb

# Each user's ratings 3 h apart in UTC; the local clocks below (+09:00 for even rows) run in another order.
INSTANTS = pd.date_range("2021-03-01", periods=6, freq="3h", tz="UTC")


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"user": ["u1"] * 3 + ["u2"] * 3, "item": ["a", "b", "c", "b", "c", "d"],
                         "rating": [4.0, 3.0, 5.0, 2.0, 4.0, 1.0], "ts": INSTANTS})


def _load(path: Path, **kwargs):
    return RatingsFile(str(path), timestamp_col="ts", **kwargs).load()


def _stamps(table) -> list[int]:
    return table.indexed["timestamp"].tolist()


def _iso(instants) -> list[str]:
    """Each instant written with +09:00 (even rows) or +00:00 (odd rows), as exports from mixed servers do."""
    return [t.tz_convert("Asia/Tokyo" if i % 2 == 0 else "UTC").isoformat() for i, t in enumerate(instants)]


def test_time_zone_aware_parquet_reads_as_the_same_instants_as_naive_utc(tmp_path):
    naive, aware = tmp_path / "naive.parquet", tmp_path / "aware.parquet"
    _frame().assign(ts=INSTANTS.tz_localize(None)).to_parquet(naive)
    _frame().assign(ts=INSTANTS.tz_convert("Asia/Tokyo")).to_parquet(aware)  # same instants, another zone
    expected = [int(t.value // 1000) for t in INSTANTS]  # microseconds since 1970 UTC
    assert _stamps(_load(naive)) == expected
    assert _stamps(_load(aware)) == expected


def test_iso_8601_text_with_offsets_reads_as_instants_in_true_order(tmp_path):
    path = tmp_path / "r.csv"
    _frame().assign(ts=_iso(INSTANTS)).to_csv(path, index=False)
    assert pd.read_csv(path)["ts"].iloc[0] == "2021-03-01T09:00:00+09:00"  # local clock: later than row 2's 03:00
    assert _stamps(_load(path)) == [int(t.value // 1000) for t in INSTANTS]


def test_iso_text_without_offsets_is_utc_and_a_mix_is_refused_naming_the_column(tmp_path):
    path = tmp_path / "r.csv"
    _frame().assign(ts=[t.strftime("%Y-%m-%d %H:%M:%S") for t in INSTANTS]).to_csv(path, index=False)
    assert _stamps(_load(path)) == [int(t.value // 1000) for t in INSTANTS]
    mixed = _iso(INSTANTS)
    mixed[3] = "2021-03-01 09:00:00"
    _frame().assign(ts=mixed).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"r\.csv, line 5, field 'ts': timestamp has no UTC offset while other rows have one"):
        _load(path)


def test_bad_timestamp_text_names_the_files_column_not_the_canonical_field(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating,ts\nu1,a,4,2021-03-01T09:00:00+09:00\nu1,b,3,yesterday\n")
    with pytest.raises(DataError, match=r"r\.csv, line 3, field 'ts': timestamp is not an integer or an ISO 8601 date-time "
                                        r"\(value 'yesterday'; 1 such row\(s\)\)"):
        _load(path)
    path.write_text("user,item,stars\nu1,a,4\nu1,b,many\n")
    with pytest.raises(DataError, match=r"r\.csv, line 3, field 'stars': rating is not a number"):
        RatingsFile(str(path), rating_col="stars").load()


@pytest.fixture(scope="module")
def tiny():
    return create_backbone(BackboneSpec("test_efficientnet", "random"))


def test_an_item_id_too_long_for_a_file_name_is_a_picture_not_found(tmp_path, tiny):
    Image.new("RGB", (24, 24), (200, 30, 30)).save(tmp_path / "short.jpg")
    long_path = tmp_path / ("item-" + "x" * 295 + ".jpg")  # over NAME_MAX (255): stat() raises ENAMETOOLONG
    nul_path = tmp_path / "bad\0name.jpg"  # stat() raises ValueError
    assert load_rgb(long_path) == (None, MISSING) and load_rgb(nul_path) == (None, MISSING)
    out = extract_item_features([tmp_path / "short.jpg", long_path, nul_path], tiny, tmp_path / "cache",
                                item_ids=["short", "long", "nul"], num_workers=0, progress=False)
    assert out.has_image.tolist() == [True, False, False]
    assert (out.report.missing, out.report.missing_examples, out.report.unreadable) == (2, ["long", "nul"], 0)


def test_a_picture_that_cannot_be_read_is_unreadable_not_a_crash(tmp_path, tiny, monkeypatch):
    from visrec.features import extract

    Image.new("RGB", (24, 24)).save(tmp_path / "locked.jpg")

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))  # what a non-root user gets for mode 000

    monkeypatch.setattr(extract, "file_digest", denied)
    out = extract_item_features([tmp_path / "locked.jpg"], tiny, tmp_path / "cache", item_ids=["locked"], num_workers=0, progress=False)
    assert (out.report.unreadable, out.report.unreadable_examples, out.report.missing) == (1, ["locked"], 0)
    assert not out.has_image.any()


def _ratings(path: Path, items: list[str], users: list[str] | None = None) -> Path:
    users = users or [f"u{i}" for i in range(len(items))]
    pd.DataFrame({"user": users, "item": items, "rating": [4] * len(items)}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("spelling", ["07", "7.0", "+7"])
def test_one_number_spelled_two_ways_in_ratings_and_test_files_is_refused(tmp_path, spelling):
    ratings = _ratings(tmp_path / "r.csv", ["7", "8", "9"])
    test = _ratings(tmp_path / "t.csv", ["8", spelling], users=["u0", "u1"])
    with pytest.raises(DataError) as err:
        RatingsFile(str(ratings), test_path=str(test)).load()
    assert str(err.value) == (f"{test}, line 3, field 'item': item id '{spelling}' is not in {ratings}, which has '7': the same number "
                              "written another way (1 such row(s)). Ids are text and matched as written; write each id the same way "
                              "in every file")


def test_one_number_spelled_two_ways_in_ratings_and_catalog_is_refused(tmp_path):
    ratings = _ratings(tmp_path / "r.csv", ["8", "7", "7"])
    pd.DataFrame({"item": ["007", "8", "9"]}).to_csv(tmp_path / "items.csv", index=False)
    with pytest.raises(DataError, match=r"r\.csv, line 3, field 'item': item id '7' is not in .*items\.csv, which has '007': "
                                        r"the same number written another way \(2 such row\(s\)\)"):
        RatingsFile(str(ratings), items_path=str(tmp_path / "items.csv")).load()


def test_ids_written_as_written_still_match_and_integer_columns_match_by_value(tmp_path):
    ratings = _ratings(tmp_path / "r.csv", ["007", "8", "x"])
    test = _ratings(tmp_path / "t.csv", ["007", "x"], users=["u1", "u0"])  # same spellings: the same ids
    assert list(RatingsFile(str(ratings), test_path=str(test)).load().items) == ["007", "8", "x"]
    pd.DataFrame({"user": [1, 2], "item": [7.0, 8.0], "rating": [4.0, 3.0]}).to_parquet(tmp_path / "r.parquet")
    pd.DataFrame({"user": [2], "item": [7], "rating": [5.0]}).to_parquet(tmp_path / "t.parquet")
    table = RatingsFile(str(tmp_path / "r.parquet"), test_path=str(tmp_path / "t.parquet")).load()
    assert list(table.items) == [7, 8]  # a Parquet 7.0 is the integer 7


def _turned_pictures(tmp_path: Path) -> tuple[Path, Path]:
    """The same picture twice (PNG, lossless): upright, and stored sideways with EXIF orientation 6
    ("turn 90° clockwise to show"), as a phone stores a portrait photo."""
    rng = np.random.default_rng(0)
    upright = Image.fromarray(rng.integers(0, 255, (48, 32, 3), dtype=np.uint8))  # 32 wide, 48 high
    upright.save(tmp_path / "upright.png")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored 48 wide, 32 high
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.png", exif=exif.tobytes())
    return tmp_path / "upright.png", tmp_path / "phone.png"


def test_exif_orientation_is_applied_before_the_cnn(tmp_path, tiny):
    upright, phone = _turned_pictures(tmp_path)
    shown, reason = load_rgb(phone)
    assert reason is None and shown.size == (32, 48)
    np.testing.assert_array_equal(np.asarray(shown), np.asarray(Image.open(upright).convert("RGB")))
    out = extract_item_features([upright, phone], tiny, tmp_path / "cache", num_workers=0, progress=False)
    assert out.has_image.all()
    np.testing.assert_allclose(out.features[1].numpy(), out.features[0].numpy(), atol=1e-6)


def test_features_cached_for_a_sideways_picture_are_not_reused(tmp_path):
    """A cache written before pictures were turned upright holds the sideways features under the file's
    plain sha256; the turned picture's digest is salted, so they are recomputed, not trusted."""
    upright, phone = _turned_pictures(tmp_path)
    assert file_digest(upright) == hashlib.sha256(upright.read_bytes()).hexdigest()
    assert file_digest(phone) != hashlib.sha256(phone.read_bytes()).hexdigest()
