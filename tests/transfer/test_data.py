"""Folder layout, image quality checks and duplicate (leakage) detection."""

import io
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.data import folders as D
from cnnlab.transfer.data import images as IM
from cnnlab.transfer.data.prepare import prepare_data


def test_flat_folder_is_one_pool_with_sorted_classes(folder):
    classes, splits = D.discover(folder)
    assert classes == ["a", "b"]
    assert list(splits) == ["train"]
    assert np.bincount(splits["train"].labels).tolist() == [24, 16]


def test_train_val_test_folders_are_used_as_given(tmp_path, make_folders):
    for split, n in (("train", 10), ("val", 4), ("test", 5)):
        make_folders(tmp_path / split, {"x": n, "y": n})
    classes, splits = D.discover(tmp_path)
    assert classes == ["x", "y"]
    assert {k: len(v.paths) for k, v in splits.items()} == {"train": 20, "val": 8, "test": 10}


def test_classes_differing_between_train_and_val_is_an_error(tmp_path, make_folders):
    make_folders(tmp_path / "train", {"x": 3, "y": 3})
    make_folders(tmp_path / "val", {"x": 3, "z": 3})
    with pytest.raises(CnnlabError, match="classes differ"):
        D.discover(tmp_path)


def test_empty_class_folder_is_an_error(folder):
    (folder / "c").mkdir()
    with pytest.raises(CnnlabError, match="holds no files"):
        D.discover(folder)


def test_single_class_is_an_error(tmp_path, make_folders):
    make_folders(tmp_path, {"only": 5})
    with pytest.raises(CnnlabError, match="single class"):
        D.discover(tmp_path)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CnnlabError, match="not found"):
        D.discover(tmp_path / "nope")


def plant_bad_files(folder):
    """A corrupt JPEG, a text file, a 1x1 image, a 16-bit PNG and a CMYK JPEG in class a."""
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(good, "JPEG")
    (folder / "a" / "corrupt.jpg").write_bytes(good.getvalue()[:300])
    (folder / "a" / "notes.txt").write_text("not an image\n")
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "a" / "tiny.png")
    ramp = (np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 2).astype(np.uint16)  # 0..3198
    Image.fromarray(ramp).save(folder / "a" / "sixteen.png")  # mode I;16
    Image.new("CMYK", (40, 40), (255, 0, 0, 0)).save(folder / "a" / "cmyk.jpg", "JPEG")


def test_bad_files_are_skipped_with_reasons_and_odd_modes_decoded(folder):
    plant_bad_files(folder)
    _, splits = D.discover(folder)
    loaded = D.load_split(splits["train"], 32)
    reasons = {p.rsplit("/", 1)[1]: r for p, r in loaded.skipped}
    assert set(reasons) == {"corrupt.jpg", "notes.txt", "tiny.png"}
    assert "corrupt" in reasons["corrupt.jpg"]
    assert "not an image" in reasons["notes.txt"]
    assert "too small (1x1" in reasons["tiny.png"]
    assert len(loaded) == 40 + 2 and loaded.images.shape == (42, 32, 32, 3)
    by_name = {p.name: img for p, img in zip(loaded.paths, loaded.images, strict=True)}
    sixteen = by_name["sixteen.png"]
    # stretched to the full 8-bit range, not clipped to white as Pillow's convert would
    assert sixteen.min() <= 5 and sixteen.max() >= 250 and sixteen.mean() < 200
    cyan = by_name["cmyk.jpg"].reshape(-1, 3).mean(0)
    assert cyan[0] < 40 and cyan[1] > 215 and cyan[2] > 215


def test_images_above_the_pixel_limit_are_skipped_unread_and_without_a_warning(folder):
    # 1,000,000 pixels against a limit of 640,000: the same path as a 20000 x 20000 bomb
    # against the default limit, at a size this test can afford to write
    Image.new("L", (1000, 1000)).save(folder / "a" / "big.png")
    _, splits = D.discover(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Pillow DecompressionBombWarning would fail here
        loaded = D.load_split(splits["train"], 32, max_pixels=800 * 800)
    reasons = {p.rsplit("/", 1)[1]: r for p, r in loaded.skipped}
    assert list(reasons) == ["big.png"]
    assert (
        "too large (1000x1000 = 1,000,000 pixels, above the limit of 640,000" in reasons["big.png"]
    )
    assert len(loaded) == 40


def test_pillow_limit_is_restored_after_reading_a_header():
    buf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buf, "PNG")
    assert IM.decode(buf.getvalue(), 16).shape == (16, 16, 3)
    assert Image.MAX_IMAGE_PIXELS == IM.MAX_PIXELS  # Pillow's own guard is back in place


@pytest.mark.parametrize("limit", [0, IM.MIN_SIDE**2 - 1, IM.MAX_PIXELS + 1])
def test_a_pixel_limit_outside_what_pillow_can_honour_is_refused(limit):
    with pytest.raises(CnnlabError, match="invalid --max-pixels"):
        IM.check_max_pixels(limit)


def test_transparent_and_palette_images_become_rgb():
    rgba = Image.new("RGBA", (20, 20), (255, 255, 255, 0))
    assert IM.to_rgb(rgba).getpixel((0, 0)) == (0, 0, 0)  # transparent -> black background
    pal = Image.new("P", (20, 20), 3)
    assert IM.to_rgb(pal).mode == "RGB"
    assert IM.to_rgb(Image.new("LA", (20, 20), (128, 255))).getpixel((1, 1)) == (128, 128, 128)


def _reencoded(path, quality=60):
    im = Image.open(path).convert("RGB").resize((36, 36))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_dhash_matches_a_reencoded_copy_but_not_a_different_image(folder):
    a0, a1 = folder / "a" / "000.png", folder / "a" / "001.png"
    h0 = D.dhash(IM.load_image(a0, 64))
    copy = D.dhash(IM.decode(_reencoded(a0), 64))
    other = D.dhash(IM.load_image(a1, 64))
    dist = D._hamming(h0[None], np.stack([copy, other]))[0]
    assert dist[0] <= D.NEAR_THRESHOLD < dist[1]


def _tail(path: str) -> str:
    return "/".join(path.split("/")[-2:])


def test_planted_duplicates_across_splits_are_found_and_removed_from_train(tmp_path, make_folders):
    make_folders(tmp_path / "train", {"x": 12, "y": 12}, seed=1)
    make_folders(tmp_path / "test", {"x": 6, "y": 6}, seed=2)
    shutil.copy(tmp_path / "test/x/000.png", tmp_path / "train/x/copy.png")  # identical
    (tmp_path / "train/y/near.jpg").write_bytes(_reencoded(tmp_path / "test/y/001.png", 85))
    cfg = TransferConfig(weights="none", image_size=32, val_size=0.25)
    report = prepare_data(tmp_path, cfg).report
    cross = [d for d in report["duplicates"] if d["split_a"] != d["split_b"]]
    found = {(d["kind"], _tail(d["path_a"]), _tail(d["path_b"])) for d in cross}
    assert ("identical", "x/copy.png", "x/000.png") in found
    assert ("near", "y/near.jpg", "y/001.png") in found
    assert report["removed_by_dedupe"] == []

    deduped = prepare_data(tmp_path, cfg.replace(dedupe=True))
    removed = {p.rsplit("/", 1)[1] for p in deduped.report["removed_by_dedupe"]}
    assert {"copy.png", "near.jpg"} <= removed
    assert len(deduped.splits["test"]) == 12  # the test set is never changed
    remaining = {p.name for s in ("train", "val") for p in deduped.splits[s].paths}
    assert not remaining & {"copy.png", "near.jpg"}


def test_carved_validation_split_is_stratified_disjoint_and_seeded(folder):
    cfg = TransferConfig(weights="none", image_size=32, val_size=0.25, test_size=0.25)
    one = prepare_data(folder, cfg)
    again = prepare_data(folder, cfg)
    splits = one.splits
    assert one.report["carved"] == ["test", "val"]
    paths = [set(map(str, s.paths)) for s in splits.values()]
    assert sum(map(len, paths)) == 40 and len(set.union(*paths)) == 40
    for s in ("val", "test"):
        assert np.bincount(splits[s].labels).tolist() == [6, 4]  # 24:16 kept
        assert splits[s].paths == again.splits[s].paths


def test_split_seed_fixes_the_carved_splits_while_the_seed_changes(folder):
    """Runs over seeds that share --split-seed validate and test on the same images (their
    ensemble can then choose its threshold on that validation split); without it each seed
    draws its own splits, as before."""
    base = TransferConfig(weights="none", image_size=32, val_size=0.25, test_size=0.25)

    def carved(cfg):
        prepared = prepare_data(folder, cfg)
        return {s: sorted(map(str, prepared.splits[s].paths)) for s in ("val", "test")}

    fixed = [carved(base.replace(seed=s, split_seed=0)) for s in (0, 1, 2)]
    assert fixed[0] == fixed[1] == fixed[2] == carved(base)  # split seed 0 = seed 0's splits
    drawn = [carved(base.replace(seed=s)) for s in (1, 2)]
    assert any(d["val"] != fixed[0]["val"] for d in drawn)  # each seed its own, by default
    assert base.replace(seed=7).splits_seed == 7 and base.replace(split_seed=3).splits_seed == 3


def test_a_class_left_without_readable_images_is_an_error(tmp_path, make_folders):
    make_folders(tmp_path, {"a": 6})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("oops")
    with pytest.raises(CnnlabError, match="no usable images for class b"):
        prepare_data(tmp_path, TransferConfig(weights="none", image_size=32))


def test_dedupe_removes_a_copy_inside_train_but_never_one_inside_test(tmp_path, make_folders):
    """A duplicate inside the test folder leaks nothing: the official test set stays whole."""
    make_folders(tmp_path / "train", {"x": 12, "y": 12}, seed=1)
    make_folders(tmp_path / "test", {"x": 6, "y": 6}, seed=2)
    shutil.copy(tmp_path / "train/x/000.png", tmp_path / "train/x/twin.png")
    shutil.copy(tmp_path / "test/y/002.png", tmp_path / "test/y/twin.png")
    cfg = TransferConfig(weights="none", image_size=32, val_size=0.25, dedupe=True)
    deduped = prepare_data(tmp_path, cfg)
    inside = {(d["split_a"], d["split_b"]) for d in deduped.report["duplicates"]}
    assert {("train", "train"), ("test", "test")} <= inside  # both are found and reported
    removed = {_tail(p) for p in deduped.report["removed_by_dedupe"]}
    assert removed & {"x/twin.png", "x/000.png"} and not removed & {"y/twin.png", "y/002.png"}
    assert len(deduped.splits["test"]) == 13
