"""Image loading, extraction, cache and weight sources (tiny random timm models keep it fast)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from conftest import compose_train
from visrec.features import BackboneSpec, create_backbone, extract_item_features
from visrec.features.images import MISSING, load_rgb
from visrec.pipeline.setup import item_features

TINY = BackboneSpec("test_efficientnet", "random")


@pytest.fixture(scope="module")
def tiny():
    return create_backbone(TINY)


def _picture(seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).convert(mode)


@pytest.fixture
def catalog(tmp_path) -> dict[str, Path | None]:
    """Good pictures in several modes, and every kind of broken one."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = {}
    for name, mode, ext in [("rgb", "RGB", "jpg"), ("grey", "L", "jpg"), ("cmyk", "CMYK", "jpg"), ("rgba", "RGBA", "png")]:
        paths[name] = folder / f"{name}.{ext}"
        _picture(len(paths), mode).save(paths[name])
    paths["palette"] = folder / "palette.png"
    _picture(9).convert("P").save(paths["palette"], transparency=0)
    good = paths["rgb"].read_bytes()
    paths["truncated"] = folder / "truncated.jpg"
    paths["truncated"].write_bytes(good[: len(good) // 2])
    paths["empty"] = folder / "empty.jpg"
    paths["empty"].write_bytes(b"")
    paths["text"] = folder / "text.jpg"
    paths["text"].write_text("not an image")
    paths["gone"] = folder / "gone.jpg"  # never written
    paths["none"] = None
    return paths


GOOD = ("rgb", "grey", "cmyk", "rgba", "palette")
UNREADABLE = ("truncated", "empty", "text")


def test_load_rgb_never_raises(catalog):
    for name in GOOD:
        image, reason = load_rgb(catalog[name])
        assert reason is None and image.mode == "RGB", name
    for name in UNREADABLE:
        image, reason = load_rgb(catalog[name])
        assert image is None and reason.startswith("unreadable"), name
    assert load_rgb(catalog["gone"]) == (None, MISSING)
    assert load_rgb(None) == (None, MISSING)


def test_transparency_composited_on_white(tmp_path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    image, _ = load_rgb(tmp_path / "clear.png")
    assert image.getpixel((0, 0)) == (255, 255, 255)


class ForwardCounter:
    def __init__(self, model):
        self.images = 0
        model.register_forward_hook(lambda module, inputs, output: self._add(len(inputs[0])))

    def _add(self, n):
        self.images += n


def _extract(catalog, backbone, cache_dir):
    names = list(catalog)
    return names, extract_item_features([catalog[n] for n in names], backbone, cache_dir, item_ids=names, num_workers=0, progress=False)


def test_bad_images_are_counted_reported_and_imageless(catalog, tiny, tmp_path):
    names, out = _extract(catalog, tiny, tmp_path / "cache")
    report = out.report
    # 10 items: 1 without a path, 1 path with no file ("gone"), 3 unreadable files, 5 pictures used.
    assert (report.items, report.images, report.with_path, report.found) == (10, 5, 9, 8)
    assert (report.no_path, report.missing, report.unreadable) == (1, 1, 3)
    assert report.items == report.no_path + report.missing + report.unreadable + report.images
    assert set(report.unreadable_examples) == set(UNREADABLE) and report.missing_examples == ["gone"]
    has = dict(zip(names, out.has_image.tolist()))
    assert all(has[n] for n in GOOD) and not any(has[n] for n in (*UNREADABLE, "gone", "none"))
    assert torch.isfinite(out.features).all()
    assert (out.features[~out.has_image] == 0).all()
    assert out.feature_dim == tiny.model.num_features
    assert "3 unreadable" in report.summary() and "truncated" in report.summary()


def test_second_run_does_zero_forwards(catalog, tmp_path):
    backbone = create_backbone(TINY)
    counter = ForwardCounter(backbone.model)
    _, first = _extract(catalog, backbone, tmp_path / "cache")
    assert counter.images == first.report.forwards == len(GOOD)
    _, second = _extract(catalog, backbone, tmp_path / "cache")
    assert counter.images == len(GOOD) and second.report.forwards == 0  # zero CNN forward passes
    assert second.report.from_cache == len(GOOD)
    torch.testing.assert_close(first.features, second.features)


def test_changed_or_added_image_recomputes_only_that(catalog, tmp_path):
    backbone = create_backbone(TINY)
    counter = ForwardCounter(backbone.model)
    _, first = _extract(catalog, backbone, tmp_path / "cache")
    _picture(99).save(catalog["rgb"])  # changed content
    catalog["new"] = catalog["rgb"].with_name("new.jpg")
    _picture(100).save(catalog["new"])  # added image
    before = counter.images
    names, second = _extract(catalog, backbone, tmp_path / "cache")
    assert counter.images - before == 2 == second.report.forwards
    row = names.index("grey")
    torch.testing.assert_close(second.features[row], first.features[row])


def test_identical_images_are_computed_once(tmp_path, tiny):
    _picture(1).save(tmp_path / "a.jpg")
    shutil.copy(tmp_path / "a.jpg", tmp_path / "b.jpg")
    out = extract_item_features([tmp_path / "a.jpg", tmp_path / "b.jpg"], tiny, tmp_path / "cache", num_workers=0, progress=False)
    assert out.report.forwards == 1 and out.has_image.all()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper", "nan_with_checksum"])
def test_corrupt_cache_is_detected_and_rebuilt(catalog, tmp_path, damage):
    backbone = create_backbone(TINY)
    _, first = _extract(catalog, backbone, tmp_path / "cache")
    (cache_file,) = (tmp_path / "cache").glob("*.npz")
    if damage == "truncate":
        cache_file.write_bytes(cache_file.read_bytes()[:200])
    elif damage == "garbage":
        cache_file.write_bytes(b"\x00" * 1000)
    else:  # valid file, altered numbers, old checksum (or a NaN with a matching checksum: a checksum is no signature)
        from visrec.features.cache import _checksum

        with np.load(cache_file) as data:
            arrays = dict(data)
        if damage == "tamper":
            arrays["features"] = arrays["features"] + 1.0
        else:
            arrays["features"][0, 0] = np.nan
            arrays["checksum"] = np.array(_checksum(arrays["digests"], arrays["features"], arrays["failed"]))
        with open(cache_file, "wb") as handle:
            np.savez(handle, **arrays)
    _, second = _extract(catalog, backbone, tmp_path / "cache")
    assert second.report.cache_rebuilt and second.report.forwards == len(GOOD)
    torch.testing.assert_close(first.features, second.features)
    _, third = _extract(catalog, backbone, tmp_path / "cache")
    assert third.report.forwards == 0 and not third.report.cache_rebuilt


def test_cache_is_keyed_by_weights(catalog, tmp_path):
    _extract(catalog, create_backbone(TINY), tmp_path / "cache")
    other = create_backbone(BackboneSpec("test_efficientnet", "random", seed=1))
    _, out = _extract(catalog, other, tmp_path / "cache")
    assert out.report.forwards == len(GOOD)  # different weights digest: nothing reused
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


# ---- weight sources -----------------------------------------------------------------------------
def test_feature_width_comes_from_the_model():
    for name in ("test_efficientnet", "test_resnet"):
        backbone = create_backbone(BackboneSpec(name, "random"))
        out = backbone.model(torch.zeros(1, 3, *backbone.data_config["input_size"][1:]))
        assert out.shape == (1, backbone.feature_dim) and backbone.feature_dim == timm.create_model(name, num_classes=0).num_features


def test_stage_pooling_adds_every_stage_average_before_the_final_features(tiny):
    for name in ("test_efficientnet", "test_resnet"):
        final = create_backbone(BackboneSpec(name, "random"))
        stages = create_backbone(BackboneSpec(name, "random", pooling="stages"))
        net = timm.create_model(name, num_classes=0)
        stage_width = sum(info["num_chs"] for info in net.feature_info)
        assert stages.feature_dim == stage_width + net.num_features
        images = torch.rand(2, 3, *final.data_config["input_size"][1:])
        out = stages.model(images)  # (2, D)
        assert out.shape == (2, stages.feature_dim)
        # the tail is exactly the final pooled features; the head is the per-stage channel means
        torch.testing.assert_close(out[:, stage_width:], final.model(images))
        _, maps = final.model.forward_intermediates(images)
        torch.testing.assert_close(out[:, :maps[0].shape[1]], maps[0].mean(dim=(2, 3)))
        # same weights, different features: the cache must not mix them
        assert stages.weights_digest == final.weights_digest and stages.key != final.key
        assert stages.describe()["pooling"] == "stages" and stages.describe()["feature_dim"] == stages.feature_dim
    assert not stages.model.training and not any(p.requires_grad for p in stages.model.parameters())
    with pytest.raises(ValueError, match="pooling must be one of"):
        create_backbone(BackboneSpec("test_efficientnet", "random", pooling="max"))
    from visrec.features.backbone import StagePooling
    with pytest.raises(ValueError, match="forward_intermediates"):
        StagePooling(torch.nn.Linear(3, 3))


def test_backbone_is_frozen_and_in_eval_mode(tiny):
    assert not tiny.model.training
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_file_weights_load_a_saved_state_dict(tmp_path, tiny):
    torch.save(tiny.model.state_dict(), tmp_path / "w.pth")
    loaded = create_backbone(BackboneSpec("test_efficientnet", "file", path=str(tmp_path / "w.pth")))
    assert loaded.weights_digest == tiny.weights_digest and loaded.key == tiny.key
    torch.save({"state_dict": tiny.model.state_dict()}, tmp_path / "wrapped.pth")
    assert create_backbone(BackboneSpec("test_efficientnet", "file", path=str(tmp_path / "wrapped.pth"))).key == tiny.key


def test_file_weights_errors(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_backbone(BackboneSpec("test_efficientnet", "file", path=str(tmp_path / "nope.pth")))
    torch.save(tiny.model.state_dict(), tmp_path / "w.pth")
    with pytest.raises(ValueError, match="do not match timm model 'test_resnet'"):
        create_backbone(BackboneSpec("test_resnet", "file", path=str(tmp_path / "w.pth")))


def test_hub_failure_names_the_other_sources(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        create_backbone(BackboneSpec("test_efficientnet", "hub"))
    except RuntimeError as err:
        assert "bundled" in str(err) and "file" in str(err)
    else:  # pragma: no cover - weights were already in the local hub cache
        pytest.skip("hub weights available locally")


def test_bundled_weights_are_real_imagenet_weights():
    bundled = create_backbone(BackboneSpec())
    assert bundled.feature_dim == 1280
    random = create_backbone(BackboneSpec("tf_efficientnet_lite0", "random"))
    assert bundled.weights_digest != random.weights_digest
    # ImageNet-trained BN statistics are far from their initial values (0 mean, 1 variance).
    bn = dict(bundled.model.named_buffers())["bn2.running_var"]
    assert not torch.allclose(bn, torch.ones_like(bn))
    with pytest.raises(ValueError, match="bundled provides tf_efficientnet_lite0 only"):
        create_backbone(BackboneSpec("resnet50", "bundled"))


def test_unknown_weight_source():
    with pytest.raises(ValueError, match="weights must be one of"):
        create_backbone(BackboneSpec("test_resnet", "imagenet"))


def test_report_is_plain_json_with_numpy_ids(tmp_path, tiny):
    import json

    ids = np.array([7, 8], dtype=np.int64)
    out = extract_item_features([tmp_path / "a.jpg", None], tiny, tmp_path / "cache", item_ids=list(ids), num_workers=0, progress=False)
    assert json.loads(json.dumps(vars(out.report)))["missing_examples"] == [7]


def test_permuted_features_are_a_reordering_with_their_image_flags(catalog, tiny, tmp_path):
    _, features = _extract(catalog, tiny, tmp_path / "cache")
    control = features.permuted(seed=3)
    assert torch.equal(control.features, features.permuted(seed=3).features)  # deterministic by seed
    assert not torch.equal(control.features, features.features)
    # Every row still exists once, and still travels with its own has-image flag.
    original = {tuple(row.tolist()): bool(flag) for row, flag in zip(features.features, features.has_image)}
    moved = {tuple(row.tolist()): bool(flag) for row, flag in zip(control.features, control.has_image)}
    assert moved == original
    assert int(control.has_image.sum()) == int(features.has_image.sum())


def test_permute_seed_in_config_permutes_the_pipeline_features(catalog, tmp_path):
    names = list(catalog)
    paths = [catalog[n] for n in names]
    plain_cfg = compose_train(["features=random", "model.visual_mode=reg", "features.progress=false", "features.num_workers=0"], tmp_path)
    control_cfg = compose_train(["features=random", "model.visual_mode=reg", "features.progress=false", "features.num_workers=0",
                                 "features.permute_seed=3"], tmp_path)
    plain = item_features(plain_cfg, paths, names)
    control = item_features(control_cfg, paths, names)  # same cache: no new forwards, only the permutation
    assert torch.equal(control.features, plain.permuted(seed=3).features)
    assert torch.equal(control.has_image, plain.permuted(seed=3).has_image)
    assert not torch.equal(control.features, plain.features)


def test_an_image_with_non_finite_features_is_counted_unreadable(tmp_path, monkeypatch):
    backbone = create_backbone(TINY)
    real_forward = backbone.model.forward

    def nan_for_the_first(batch):  # the CNN gives NaN for the first image of each batch
        out = real_forward(batch).clone()
        out[0] = float("nan")
        return out

    monkeypatch.setattr(backbone.model, "forward", nan_for_the_first)
    _picture(1).save(tmp_path / "a.jpg")
    _picture(2).save(tmp_path / "b.jpg")
    out = extract_item_features([tmp_path / "a.jpg", tmp_path / "b.jpg"], backbone, tmp_path / "cache", num_workers=0, progress=False)
    assert out.report.unreadable == 1 and out.has_image.tolist() == [False, True]
    assert torch.isfinite(out.features).all()


def test_two_runs_saving_one_cache_keep_each_others_features(tmp_path):
    """Two runs sharing a data folder each loaded the cache, computed their own pictures and saved: the last
    save won and the other run's rows were gone (its rerun computed them all again)."""
    from visrec.features.cache import FeatureCache

    first, second = FeatureCache(tmp_path, "key", 4), FeatureCache(tmp_path, "key", 4)  # both loaded the empty cache
    first.put("a" * 64, np.ones(4))
    first.failed.add("c" * 64)
    first.save()
    second.put("b" * 64, np.full(4, 2.0))
    second.save()
    merged = FeatureCache(tmp_path, "key", 4)
    assert set(merged.rows) == {"a" * 64, "b" * 64} and merged.failed == {"c" * 64}
    np.testing.assert_array_equal(merged.get("a" * 64), np.ones(4))


def test_an_interrupted_extraction_keeps_what_it_computed(catalog, tiny, tmp_path):
    """Ctrl-C during feature extraction lost every picture computed so far (the cache was saved only at the
    end); now they are saved on the way out (and every SAVE_EVERY pictures, against a kill)."""
    from types import SimpleNamespace

    from visrec.features.cache import FeatureCache

    calls = []

    def model(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return tiny.model(batch)

    interrupted = SimpleNamespace(key=tiny.key, feature_dim=tiny.feature_dim, transform=tiny.transform, model=model)
    paths = [catalog[name] for name in GOOD]
    with pytest.raises(KeyboardInterrupt):
        extract_item_features(paths, interrupted, tmp_path / "cache", batch_size=1, num_workers=0, progress=False)
    assert len(FeatureCache(tmp_path / "cache", tiny.key, tiny.feature_dim).rows) == 2
    rerun = extract_item_features(paths, tiny, tmp_path / "cache", batch_size=1, num_workers=0, progress=False)
    assert rerun.report.from_cache == 2 and rerun.report.forwards == len(GOOD) - 2
