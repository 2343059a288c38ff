"""npz with several named inputs, memory-mapped .npy folders, lazily read rows."""
import numpy as np
import pytest
from click.testing import CliRunner

from dlc.cli import main
from dlc.errors import DlcError
from dlc.runtime.data import batches
from dlc.runtime.data_arrays import LazyRows, NamedInputs, split_index
from dlc.runtime.data_sources import open_dataset

TWO = [("a", (3,), "float32"), ("b", (2, 2), "float32")]


def _arrays(n=40, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 3)).astype(np.float32)
    b = rng.standard_normal((n, 4)).astype(np.float32)        # stored flat, the model takes [2, 2]
    label = ((a[:, 0] + b[:, 0]) > 0).astype(np.int64) + 2 * (b[:, 3] > 0)
    return a, b, label


def test_npz_feeds_inputs_by_name(tmp_path):
    a, b, label = _arrays()
    p = tmp_path / "d.npz"
    np.savez(p, b=b, a=a, label=label, unused=np.zeros(3))
    ds = open_dataset("npz", path=p, inputs=TWO, seed=5, options={"split": 0.25})
    assert isinstance(ds.train[0], NamedInputs) and ds.train[0].names == ["a", "b"]
    tr, va = split_index(40, 0.25, 5)
    np.testing.assert_array_equal(ds.train[0]["a"], a[tr])
    np.testing.assert_array_equal(ds.val[0]["b"], b[va].reshape(-1, 2, 2))
    np.testing.assert_array_equal(ds.train[1], label[tr])
    assert ds.num_classes == 4
    xb, yb = next(batches(*ds.train, 7, shuffle=True, seed=1, epoch=0))
    order = np.random.default_rng([1, 0]).permutation(30)[:7]
    np.testing.assert_array_equal(xb["a"], a[tr][order])
    np.testing.assert_array_equal(yb, label[tr][order])


def test_npz_train_val_arrays_and_label_name(tmp_path):
    a, b, label = _arrays()
    p = tmp_path / "d.npz"
    np.savez(p, a_train=a[:30], a_val=a[30:], b_train=b[:30], b_val=b[30:], target_train=label[:30],
             target_val=label[30:])
    ds = open_dataset("npz", path=p, inputs=TWO, options={"label": "target"})
    np.testing.assert_array_equal(ds.val[0]["a"], a[30:])
    np.testing.assert_array_equal(ds.val[1], label[30:])
    with pytest.raises(DlcError, match="no label array 'label' or 'y'"):
        open_dataset("npz", path=p, inputs=TWO)


def test_missing_input_name_is_an_error_naming_the_file(tmp_path):
    a, b, label = _arrays()
    p = tmp_path / "d.npz"
    np.savez(p, a=a, bb=b, label=label)
    with pytest.raises(DlcError) as e:
        open_dataset("npz", path=p, inputs=TWO)
    assert f"{p} has no array for the model input 'b'" in e.value.message and "'bb'" in e.value.message
    np.savez(p, a=a, b=b[:, :3], label=label)
    with pytest.raises(DlcError, match="b has rows of shape .3,., the model input expects .2, 2."):
        open_dataset("npz", path=p, inputs=TWO)


def test_label_outside_the_model_classes(tmp_path):
    a, b, label = _arrays()
    p = tmp_path / "d.npz"
    np.savez(p, a=a, b=b, label=label)
    with pytest.raises(DlcError) as e:
        open_dataset("npz", path=p, inputs=TWO, num_classes=3)
    assert str(p) in e.value.message and "label 3" in e.value.message and "3 classes 0..2" in e.value.message


def test_one_input_npz_keeps_the_x_y_layout(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, x_train=rng.standard_normal((6, 4)), y_train=np.arange(6) % 2, x_val=rng.standard_normal((2, 4)),
             y_val=np.array([0, 1]))
    ds = open_dataset("npz", path=p, inputs=[("x", (2, 2), "float32")])
    assert ds.train[0].shape == (6, 2, 2) and ds.train[0].dtype == np.float32


def _npy_folder(tmp_path, n=50):
    a, b, label = _arrays(n)
    d = tmp_path / "arrays"
    d.mkdir()
    np.save(d / "a.npy", a)
    np.save(d / "b.npy", b)
    np.save(d / "label.npy", label)
    return d, a, b, label


def test_npy_folder_is_memory_mapped_and_read_by_index(tmp_path):
    d, a, b, label = _npy_folder(tmp_path)
    ds = open_dataset("npy", path=d, inputs=TWO, seed=2)
    xa = ds.train[0]["a"]
    assert isinstance(xa, LazyRows) and isinstance(xa.base, np.memmap)
    tr, _ = split_index(50, 0.2, 2)
    np.testing.assert_array_equal(xa.index, tr)
    # batches read from the map equal batches of the arrays in memory
    got = list(batches(*ds.train, 8, shuffle=True, seed=3, epoch=1))
    want = list(batches(NamedInputs({"a": a[tr], "b": b[tr].reshape(-1, 2, 2)}), label[tr], 8, shuffle=True,
                        seed=3, epoch=1))
    assert len(got) == len(want) == 5
    for (gx, gy), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(gx["a"], wx["a"])
        np.testing.assert_array_equal(gx["b"], wx["b"])
        np.testing.assert_array_equal(gy, wy)


def test_lazy_rows_read_only_what_a_batch_asks_for():
    reads = []

    class Spy:
        shape, dtype = (100, 3), np.dtype(np.float32)

        def __len__(self):
            return 100

        def __getitem__(self, rows):
            reads.append(np.asarray(rows).copy())
            return np.asarray(rows, np.float32)[:, None] * np.ones(3, np.float32)
    rows = LazyRows(Spy(), index=np.arange(100)[::-1])
    out = rows[np.array([5, 1, 9])]
    np.testing.assert_array_equal(out[:, 0], [94, 98, 90])
    assert len(reads) == 1 and reads[0].tolist() == [90, 94, 98]      # ascending file order
    assert rows[2:4][:, 0].tolist() == [97, 96]


def test_lazy_rows_name_the_file_when_a_read_fails():
    class Broken:
        shape, dtype = (10, 2), np.dtype(np.float32)

        def __len__(self):
            return 10

        def __getitem__(self, rows):
            raise OSError("Input/output error")
    with pytest.raises(DlcError, match="cannot read rows from /data/x.npy: Input/output error"):
        LazyRows(Broken(), source="/data/x.npy")[np.array([1, 2])]


TWO_SPEC = """
model Two(a: f32[N, 3], b: f32[N, 2, 2]) -> f32[N, 4] {
    example N = 1
    h = concat([dense(a, 16), dense(flatten(b), 16)], axis=1) |> relu
    output = dense(h, 4)
    return output
}

train Two on npz {
    loss      = cross_entropy(output, label)
    optimizer = adam(lr=2e-2)
    epochs    = 3
    batch     = 8
    data      = "d.npz"
}
"""


def test_dlc_train_a_two_input_model_on_npz_and_npy(tmp_path):
    d, a, b, label = _npy_folder(tmp_path, n=60)
    np.savez(tmp_path / "d.npz", a=a, b=b, label=label)
    spec = tmp_path / "two.dln"
    spec.write_text(TWO_SPEC)
    runs = {}
    for name, args in (("npz", []), ("npy", ["--data", "npy", "--data-path", str(d)])):
        r = CliRunner().invoke(main, ["train", str(spec), *args, "--out", str(tmp_path / name), "--no-progress"])
        assert r.exit_code == 0, r.output
        runs[name] = r.output
    # the same rows in memory and memory-mapped: the same training, to the printed digit
    assert runs["npz"].split("run:")[0] == runs["npy"].split("run:")[0]
    np.savez(tmp_path / "d.npz", a=a, label=label)
    r = CliRunner().invoke(main, ["train", str(spec), "--out", str(tmp_path / "bad"), "--no-progress"])
    assert r.exit_code != 0 and "no array for the model input 'b'" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("grad", ["autograd", "symbolic"])
def test_a_two_input_model_trains_alike_on_numpy_and_torch(tmp_path, grad):
    pytest.importorskip("torch")
    import dlc
    _, a, b, label = _npy_folder(tmp_path, n=40)
    np.savez(tmp_path / "d.npz", a=a, b=b, label=label)
    spec = tmp_path / "two.dln"
    spec.write_text(TWO_SPEC)
    ref = dlc.train(spec, out=str(tmp_path / "np"), progress=False, epochs=2)
    got = dlc.train(spec, out=str(tmp_path / grad), progress=False, epochs=2, backend="torch", grad=grad)
    for k in ref.weights:
        np.testing.assert_allclose(got.weights[k], ref.weights[k], rtol=2e-4, atol=2e-5)
    assert got.history[-1]["val_loss"] == pytest.approx(ref.history[-1]["val_loss"], rel=1e-4)


def test_augment_refuses_several_inputs():
    from dlc.runtime.data import augment
    x = NamedInputs({"a": np.zeros((2, 1, 4, 4)), "b": np.zeros((2, 3))})
    with pytest.raises(DlcError, match=r"augment works on a one-input image data set; this one feeds \['a', 'b'\]"):
        augment(x, [("hflip", {})], np.random.default_rng(0))
