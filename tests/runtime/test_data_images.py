"""The image_folder data set: PNG and JPEG files written here by Pillow."""
import os

import numpy as np
import pytest
from click.testing import CliRunner

from dlc.cli import main
from dlc.errors import DlcError
from dlc.runtime import data_images
from dlc.runtime.data_sources import open_dataset

Image = pytest.importorskip("PIL.Image")

CLASSES = ["zebra", "Apple", "mango"]          # sorted like torchvision: "Apple" < "mango" < "zebra"


def _folder(root, per_class=5, size=(12, 10), seed=0):
    """A folder of coloured noise images: class k is brighter in channel k."""
    rng = np.random.default_rng(seed)
    for c in CLASSES:
        k = sorted(CLASSES).index(c)
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 80, size + (3,)).astype(np.uint8)
            a[..., k] += 170
            ext = "png" if i % 2 else "JPG"          # upper-case extensions count too
            Image.fromarray(a).save(root / c / f"img{i}.{ext}")
    (root / "zebra" / "notes.txt").write_text("not an image")
    return root


def _inputs(c=3, h=8, w=8):
    return [("image", (c, h, w), "float32")]


def test_classes_sorted_and_files_walked_like_torchvision(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "mango" / "deeper").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "mango" / "deeper" / "a.png")
    classes, files = data_images.scan(root)
    assert classes == ["Apple", "mango", "zebra"]
    labels = [k for _, k in files]
    assert labels == sorted(labels)
    mango = [f.relative_to(root / "mango").as_posix() for f, k in files if k == 1]
    # torchvision: sorted(os.walk(class folder)), then sorted file names: a folder before its sub-folders
    assert mango == ["img0.JPG", "img1.png", "img2.JPG", "img3.png", "img4.JPG", "deeper/a.png"]
    assert all(f.suffix.lower() in (".png", ".jpg") for f, _ in files)


def test_pixels_are_bilinear_resized_and_normalised(tmp_path):
    root = _folder(tmp_path / "imgs")
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    ds = open_dataset("image_folder", path=root, inputs=_inputs(), seed=3,
                      options={"mean": mean, "std": std, "cache": str(tmp_path / "c"), "split": 0.4})
    assert ds.num_classes == 3 and ds.info["classes"] == ["Apple", "mango", "zebra"]
    assert len(ds.train[0]) == 9 and len(ds.val[0]) == 6
    _, files = data_images.scan(root)
    x_all = ds.train[0].base          # the cached uint8 pixels of every file, in scan order
    for i, (f, k) in enumerate(files):
        with Image.open(f) as im:
            want = np.asarray(im.convert("RGB").resize((8, 8), Image.BILINEAR)).transpose(2, 0, 1)
        np.testing.assert_array_equal(x_all[i], want)
    xb = ds.train[0][np.arange(len(ds.train[0]))]
    assert xb.dtype == np.float32 and xb.shape == (9, 3, 8, 8)
    raw = x_all[ds.train[0].index].astype(np.float32) / 255
    np.testing.assert_allclose(xb, (raw - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1)),
                               rtol=1e-6)
    # the label of a row is its folder's class, and the split is the seeded one of every data set
    labels = np.array([k for _, k in files])
    np.testing.assert_array_equal(ds.train[1], labels[ds.train[0].index])
    assert sorted(np.r_[ds.train[0].index, ds.val[0].index].tolist()) == list(range(15))


def test_grey_model_input_decodes_to_one_channel(tmp_path):
    root = _folder(tmp_path / "imgs")
    ds = open_dataset("image_folder", path=root, inputs=_inputs(c=1, h=5, w=7),
                      options={"cache": str(tmp_path / "c")})
    f, _ = data_images.scan(root)[1][0]
    with Image.open(f) as im:
        want = np.asarray(im.convert("L").resize((7, 5), Image.BILINEAR))
    np.testing.assert_array_equal(ds.train[0].base[0, 0], want)
    with pytest.raises(DlcError, match="1 .grey. or 3"):
        open_dataset("image_folder", path=root, inputs=_inputs(c=2), options={"cache": str(tmp_path / "c")})


def test_cache_reused_then_invalidated_when_a_file_changes(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs")
    calls = []
    real = data_images.decode
    monkeypatch.setattr(data_images, "decode", lambda *a: calls.append(a[0]) or real(*a))
    opts = {"cache": str(tmp_path / "c")}
    first = open_dataset("image_folder", path=root, inputs=_inputs(), options=opts)
    assert len(calls) == 15
    cached = list((tmp_path / "c").glob("images-*.npy"))
    assert len(cached) == 1 and isinstance(first.train[0].base, np.memmap)
    calls.clear()
    again = open_dataset("image_folder", path=root, inputs=_inputs(), options={**opts, "mean": [0.5]})
    assert calls == [] and again.info["cache"] == first.info["cache"]     # mean/std apply per batch
    # rewrite one image: new content, new mtime -> a new cache entry, decoded again
    f = root / "mango" / "img1.png"
    Image.fromarray(np.full((12, 10, 3), 7, np.uint8)).save(f)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    changed = open_dataset("image_folder", path=root, inputs=_inputs(), options=opts)
    assert len(calls) == 15 and changed.info["cache"] != first.info["cache"]
    i = [p for p, _ in data_images.scan(root)[1]].index(f)
    assert (changed.train[0].base[i] == 7).all()
    calls.clear()
    open_dataset("image_folder", path=root, inputs=_inputs(h=6, w=6), options=opts)   # another size: another key
    assert len(calls) == 15


def test_corrupt_image_names_the_file_and_leaves_no_cache(tmp_path):
    root = _folder(tmp_path / "imgs")
    bad = root / "Apple" / "img2.JPG"
    bad.write_bytes(bad.read_bytes()[:40])           # a truncated JPEG
    with pytest.raises(DlcError) as e:
        open_dataset("image_folder", path=root, inputs=_inputs(), options={"cache": str(tmp_path / "c")})
    assert str(bad) in e.value.message and "cannot read image" in e.value.message
    assert not list((tmp_path / "c").glob("*"))      # the temporary cache file was removed
    (root / "Apple" / "img3.png").write_text("plain text")
    bad.unlink()
    with pytest.raises(DlcError, match="img3.png"):
        open_dataset("image_folder", path=root, inputs=_inputs(), options={"cache": str(tmp_path / "c")})


def test_empty_class_folder_and_missing_folder(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "kiwi").mkdir()
    (root / "kiwi" / "readme.md").write_text("x")
    with pytest.raises(DlcError) as e:
        open_dataset("image_folder", path=root, inputs=_inputs(), options={"cache": str(tmp_path / "c")})
    assert str(root / "kiwi") in e.value.message and "holds no images" in e.value.message
    with pytest.raises(DlcError, match="no such image folder"):
        open_dataset("image_folder", path=tmp_path / "nope", inputs=_inputs())


def test_more_classes_than_model_outputs_is_an_error(tmp_path):
    root = _folder(tmp_path / "imgs")
    with pytest.raises(DlcError) as e:
        open_dataset("image_folder", path=root, inputs=_inputs(), num_classes=2,
                     options={"cache": str(tmp_path / "c")})
    assert "3 classes" in e.value.message and "outputs 2" in e.value.message


def test_separate_val_folder_and_options_checked(tmp_path):
    root = _folder(tmp_path / "imgs")
    val = _folder(tmp_path / "val", per_class=2, seed=1)
    ds = open_dataset("image_folder", path=root, inputs=_inputs(), options={"val": str(val), "cache": str(tmp_path / "c")})
    assert len(ds.train[0]) == 15 and len(ds.val[0]) == 6
    np.testing.assert_array_equal(ds.val[1], [0, 0, 1, 1, 2, 2])
    with pytest.raises(DlcError, match="has no option 'colour'"):
        open_dataset("image_folder", path=root, inputs=_inputs(), options={"colour": "RGB"})
    with pytest.raises(DlcError, match="std has 2 values for 3 channels"):
        open_dataset("image_folder", path=root, inputs=_inputs(), options={"std": [1, 1], "cache": str(tmp_path / "c")})
    with pytest.raises(DlcError, match="size"):
        open_dataset("image_folder", path=root, inputs=_inputs(), options={"size": 16})


def test_first_pass_progress_lines(tmp_path):
    from rich.console import Console

    from dlc.runtime.progress import LoadProgress
    con = Console(record=True, width=200, force_terminal=False)
    with LoadProgress(3, "decoding imgs", console=con, live=False) as p:
        for _ in range(3):
            p.advance()
    out = con.export_text()
    assert "decoding imgs: 3 files\n" in out and "decoding imgs: 3 files in" in out


SPEC = """
model Net(image: f32[N, 3, 8, 8]) -> f32[N, 3] {
    example N = 1
    c = conv2d(image, 4, kernel=3, padding=1) |> relu |> maxpool2d(2) |> flatten
    output = dense(c, 3)
    return output
}

train Net on image_folder {
    loss      = cross_entropy(output, label)
    optimizer = adam(lr=1e-2)
    epochs    = 4
    batch     = 4
    data      = image_folder("imgs", mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], cache="cache")
}
"""


def test_dlc_train_on_an_image_folder(tmp_path):
    _folder(tmp_path / "imgs", per_class=8)
    spec = tmp_path / "net.dln"
    spec.write_text(SPEC)
    r = CliRunner().invoke(main, ["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 1     # relative to the .dln
    assert "val_accuracy=1.0000" in r.output                             # the classes are separable by colour
    # the same folder from the command line, with the first-pass progress shown
    r = CliRunner().invoke(main, ["train", str(spec), "--data", "image_folder", "--data-path", str(tmp_path / "imgs"),
                                  "--data-option", "mean=0.5", "--data-option", f"cache={tmp_path / 'c2'}",
                                  "--epochs", "1", "--out", str(tmp_path / "run2")])
    assert r.exit_code == 0, r.output
    assert f"decoding {tmp_path / 'imgs'}: 24 files" in r.output


def test_dlc_train_reports_a_bad_image_without_traceback(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "mango" / "img0.JPG").write_bytes(b"\xff\xd8 not really")
    spec = tmp_path / "net.dln"
    spec.write_text(SPEC)
    r = CliRunner().invoke(main, ["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code != 0
    assert f"cannot read image {root / 'mango' / 'img0.JPG'}" in r.output and "Traceback" not in r.output
