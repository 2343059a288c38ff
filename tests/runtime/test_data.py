"""Bundled data sets, seeded batching and augmentation."""
import importlib.util

import numpy as np
import pytest
from dlc.runtime.data import (
    augment,
    batches,
    epoch_rng,
    hflip,
    load_dataset,
    num_batches,
    random_crop,
)

from dlc.errors import DlcError

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn is not installed")


@pytest.fixture(scope="module")
def digits():
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed")
    return load_dataset("digits")


def test_missing_sklearn_gives_install_hint(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DlcError) as e:
        load_dataset("iris")
    assert "pip install scikit-learn" in e.value.hint


def test_digits_split_and_ranges(digits):
    (xt, yt), (xv, yv) = digits.train, digits.val
    assert xt.shape == (1437, 64) and xv.shape == (360, 64)
    assert yt.shape == (1437,) and yv.shape == (360,)
    assert xt.dtype == np.float32 and yt.dtype == np.int64
    assert 0.0 <= xt.min() and xt.max() <= 1.0 and xt.max() == 1.0
    assert set(np.unique(yt)) == set(range(10))
    assert digits.num_classes == 10 and digits.input_shape == (64,)
    assert digits.task == "classification"


def test_digits_matches_sklearn_split(digits):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    xt, xv, yt, yv = train_test_split(d.data, d.target, test_size=0.2, random_state=0)
    np.testing.assert_allclose(digits.train[0], xt / 16, rtol=1e-6)
    np.testing.assert_allclose(digits.val[0], xv / 16, rtol=1e-6)
    np.testing.assert_array_equal(digits.train[1], yt)
    np.testing.assert_array_equal(digits.val[1], yv)


def test_digits_rows_and_images_are_the_same_split(digits):
    rows = load_dataset("digits_rows")
    imgs = load_dataset("digits_images")
    assert rows.train[0].shape == (1437, 8, 8) and rows.val[0].shape == (360, 8, 8)
    assert rows.input_shape == (8, 8) and imgs.input_shape == (1, 8, 8)
    assert imgs.train[0].shape == (1437, 1, 8, 8)
    np.testing.assert_array_equal(rows.train[0].reshape(-1, 64), digits.train[0])
    np.testing.assert_array_equal(imgs.val[0].reshape(-1, 64), digits.val[0])
    np.testing.assert_array_equal(rows.train[1], digits.train[1])
    # row r of an example is pixels 8r..8r+7 of the flat vector
    np.testing.assert_array_equal(rows.train[0][5, 3], digits.train[0][5, 24:32])


def test_reshaped_fits_model_inputs(digits):
    assert digits.reshaped((8, 8)).train[0].shape == (1437, 8, 8)
    lenet = digits.reshaped((1, 32, 32))
    x = lenet.train[0]
    assert x.shape == (1437, 1, 32, 32)
    np.testing.assert_array_equal(x[:, 0, 12:20, 12:20].reshape(-1, 64), digits.train[0])
    assert x[:, :, :12].sum() == 0 and x[:, :, 20:].sum() == 0
    with pytest.raises(DlcError):
        digits.reshaped((3, 7))


@needs_sklearn
@pytest.mark.parametrize("name,features,classes", [("iris", 4, 3), ("wine", 13, 3), ("breast_cancer", 30, 2)])
def test_tables_standardised_with_train_stats(name, features, classes):
    ds = load_dataset(name)
    (xt, yt), (xv, yv) = ds.train, ds.val
    assert xt.dtype == np.float32 and yt.dtype == np.int64 and yv.dtype == np.int64
    assert xt.shape[1] == features and ds.input_shape == (features,) and ds.num_classes == classes
    np.testing.assert_allclose(xt.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(xt.std(axis=0), 1, atol=1e-4)
    assert abs(xv.mean()) < 0.5 and not np.allclose(xv.mean(axis=0), 0, atol=1e-5)  # val uses train stats
    assert len(xv) == int(np.ceil(0.2 * (len(xt) + len(xv))))


@needs_sklearn
def test_split_and_seed_change_the_split():
    a, b = load_dataset("iris", seed=0), load_dataset("iris", seed=1)
    assert not np.array_equal(a.val[1], b.val[1]) or not np.array_equal(a.val[0], b.val[0])
    assert len(load_dataset("iris", split=0.5).val[0]) == 75
    assert len(load_dataset("iris", seed=-1).val[0]) == 30          # any int seed
    with pytest.raises(DlcError):
        load_dataset("iris", split=1.5)


def test_npz_explicit_split(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=rng.random((20, 3)), y_train=rng.integers(0, 4, 20),
             x_val=rng.random((5, 3)), y_val=rng.integers(0, 4, 5))
    ds = load_dataset("npz", path=f)
    assert ds.train[0].shape == (20, 3) and ds.train[0].dtype == np.float32
    assert ds.val[1].dtype == np.int64 and ds.input_shape == (3,) and ds.num_classes == 4


def test_npz_xy_split_with_seed_keeps_token_ids(tmp_path):
    f = tmp_path / "tok.npz"
    x = np.arange(100 * 7, dtype=np.int64).reshape(100, 7)
    np.savez(f, x=x, y=np.arange(100) % 2)
    a = load_dataset("npz", path=f, seed=3)
    b = load_dataset("npz", path=f, seed=3)
    c = load_dataset("npz", path=f, seed=4)
    assert a.train[0].dtype == np.int64 and len(a.val[0]) == 20 and len(a.train[0]) == 80
    np.testing.assert_array_equal(a.val[0], b.val[0])
    assert not np.array_equal(a.val[0], c.val[0])
    # a partition: every row once
    assert sorted(np.concatenate([a.train[0][:, 0], a.val[0][:, 0]]).tolist()) == list(range(0, 700, 7))
    np.testing.assert_array_equal(a.train[1], a.train[0][:, 0] // 7 % 2)   # labels follow their rows


def test_npz_errors(tmp_path):
    with pytest.raises(DlcError, match="needs a file"):
        load_dataset("npz")
    with pytest.raises(DlcError, match="no such data file"):
        load_dataset("npz", path=tmp_path / "missing.npz")
    f = tmp_path / "bad.npz"
    np.savez(f, a=np.zeros(3))
    with pytest.raises(DlcError, match="x_train"):
        load_dataset("npz", path=f)
    f = tmp_path / "obj.npz"
    np.savez(f, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(DlcError):            # object arrays would need pickle: refused
        load_dataset("npz", path=f)


def test_unknown_dataset():
    with pytest.raises(DlcError, match="unknown data set"):
        load_dataset("mnist")


def test_synthetic_seeded_and_shaped():
    a = load_dataset("synthetic", seed=5, input_shape=(3, 8, 8), num_classes=10, size=100)
    b = load_dataset("synthetic", seed=5, input_shape=(3, 8, 8), num_classes=10, size=100)
    assert a.train[0].shape == (80, 3, 8, 8) and a.val[0].shape == (20, 3, 8, 8)
    assert a.num_classes == 10 and a.input_shape == (3, 8, 8) and a.train[1].max() < 10
    np.testing.assert_array_equal(a.train[0], b.train[0])
    assert not np.array_equal(a.train[0], load_dataset("synthetic", seed=6, input_shape=(3, 8, 8)).train[0][:80])
    r = load_dataset("synthetic", task="regression")
    assert r.task == "regression" and r.num_classes is None and r.train[1].dtype == np.float32
    d = load_dataset("synthetic")
    assert d.train[0].shape[1:] == (16,) and d.num_classes == 4


def test_synthetic_classes_are_learnable():
    ds = load_dataset("synthetic", seed=0, num_classes=3, size=600)
    (xt, yt), (xv, yv) = ds.train, ds.val
    means = np.stack([xt[yt == k].mean(axis=0) for k in range(3)])
    pred = ((xv[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == yv).mean() > 0.9


# batches --------------------------------------------------------------------------------
def _collect(x, y, **kw):
    return [(bx.copy(), by.copy()) for bx, by in batches(x, y, **kw)]


def test_batches_cover_every_example_once():
    x, y = np.arange(103)[:, None].astype(np.float32), np.arange(103)
    out = _collect(x, y, batch=10, shuffle=True, seed=0, epoch=0)
    assert [len(b[1]) for b in out] == [10] * 10 + [3] == [10] * (num_batches(103, 10) - 1) + [3]
    seen = np.concatenate([b[1] for b in out])
    assert sorted(seen.tolist()) == list(range(103)) and seen.tolist() != list(range(103))
    for bx, by in out:
        np.testing.assert_array_equal(bx[:, 0], by)
    dl = _collect(x, y, batch=10, shuffle=True, seed=0, epoch=0, drop_last=True)
    assert len(dl) == 10 == num_batches(103, 10, drop_last=True)
    plain = _collect(x, y, batch=50, shuffle=False, seed=0, epoch=0)
    assert plain[0][1].tolist() == list(range(50))


def test_batches_deterministic_per_seed_and_epoch():
    x, y = np.random.default_rng(0).random((64, 2)), np.arange(64)

    def order(seed, epoch):
        return np.concatenate([b for _, b in batches(x, y, 16, shuffle=True, seed=seed, epoch=epoch)])

    np.testing.assert_array_equal(order(1, 3), order(1, 3))
    assert not np.array_equal(order(1, 3), order(1, 4))      # epochs differ
    assert not np.array_equal(order(1, 3), order(2, 3))      # seeds differ
    # resuming: epoch k alone equals epoch k of a full run
    full = [order(7, e) for e in range(5)]
    np.testing.assert_array_equal(order(7, 3), full[3])
    np.testing.assert_array_equal(order(7, 3), np.random.default_rng([7, 3]).permutation(64))
    order(-1, 0)                                             # a negative seed is accepted


def test_batches_errors():
    with pytest.raises(DlcError):
        list(batches(np.zeros((3, 1)), np.zeros(2), 2, shuffle=False, seed=0, epoch=0))
    with pytest.raises(DlcError):
        list(batches(np.zeros((3, 1)), np.zeros(3), 0, shuffle=False, seed=0, epoch=0))


# augmentation -----------------------------------------------------------------------------
@pytest.fixture
def images():
    return np.random.default_rng(0).random((16, 3, 8, 8)).astype(np.float32)


def test_hflip_p1_twice_is_identity(images):
    once = hflip(images, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(once, images[..., ::-1])
    np.testing.assert_array_equal(hflip(once, 1.0, np.random.default_rng(1)), images)
    np.testing.assert_array_equal(hflip(images, 0.0, np.random.default_rng(0)), images)
    with pytest.raises(DlcError):
        hflip(images, 1.5, np.random.default_rng(0))


def test_hflip_flips_a_seeded_subset(images):
    out = hflip(images, 0.5, np.random.default_rng(3))
    np.testing.assert_array_equal(out, hflip(images, 0.5, np.random.default_rng(3)))
    flipped = [np.array_equal(o, i[..., ::-1]) for o, i in zip(out, images)]
    same = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(f != s for f, s in zip(flipped, same)) and 0 < sum(flipped) < len(images)
    assert out is not images and np.shares_memory(out, images) is False


def test_random_crop_identity_and_shapes(images):
    np.testing.assert_array_equal(random_crop(images, 8, 0, np.random.default_rng(0)), images)
    out = random_crop(images, 8, 2, np.random.default_rng(0))
    assert out.shape == images.shape
    small = random_crop(images, (4, 6), 0, np.random.default_rng(0))
    assert small.shape == (16, 3, 4, 6)
    with pytest.raises(DlcError):
        random_crop(images, 13, 2, np.random.default_rng(0))
    with pytest.raises(DlcError):
        random_crop(images[:, 0], 4, 0, np.random.default_rng(0))


def test_random_crop_is_a_shifted_window(images):
    p = 2
    out = random_crop(images, 8, p, np.random.default_rng(5))
    np.testing.assert_array_equal(out, random_crop(images, 8, p, np.random.default_rng(5)))
    padded = np.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))
    shifts = set()
    for i in range(len(images)):
        hits = [(t, l) for t in range(2 * p + 1) for l in range(2 * p + 1)
                if np.array_equal(out[i], padded[i, :, t:t + 8, l:l + 8])]
        assert hits, f"image {i} is not a window of the padded image"
        shifts.add(hits[0])
    assert len(shifts) > 1                                   # offsets differ per image


def test_augment_pipeline_seeded_per_epoch(images):
    specs = [("random_crop", {"size": 8, "padding": 1}), ("hflip", {"p": 0.5})]
    a = augment(images, specs, epoch_rng(0, 2))
    b = augment(images, specs, epoch_rng(0, 2))
    c = augment(images, specs, epoch_rng(0, 3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(DlcError):
        augment(images, [("rotate", {})], epoch_rng(0, 0))
