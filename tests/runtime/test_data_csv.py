"""The csv data set: tables written by the tests."""
import numpy as np
import pytest
from click.testing import CliRunner

from dlc.cli import main
from dlc.errors import DlcError
from dlc.runtime.data_arrays import split_index
from dlc.runtime.data_sources import open_dataset

ROWS = [  # age, colour, height, kind
    (31.0, "red", 170.5, "cat"), (42.5, "blue", 181.0, "dog"), (29.0, "red", 165.0, "cat"),
    (47.0, "green", 190.5, "dog"), (35.5, "blue", 172.0, "cat"), (51.0, "red", 185.5, "dog"),
    (27.5, "green", 160.0, "cat"), (44.0, "blue", 178.5, "dog"), (38.0, "red", 175.0, "cat"),
    (49.5, "green", 188.0, "dog"),
]


def _write(path, rows=ROWS, header="age,colour,height,kind"):
    path.write_text(header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def _inputs(width):
    return [("x", (width,), "float32")]


def test_standardised_with_the_training_split_and_one_hot(tmp_path):
    p = _write(tmp_path / "t.csv")
    ds = open_dataset("csv", path=p, inputs=_inputs(5), seed=0, options={"label": "kind", "split": 0.3})
    tr, va = split_index(len(ROWS), 0.3, 0)
    rows_t, rows_v = [ROWS[i] for i in tr], [ROWS[i] for i in va]
    cats = sorted({r[1] for r in rows_t})
    assert ds.info["columns"] == ["age"] + [f"colour={c}" for c in cats] + ["height"]
    for col, j in (("age", 0), ("height", 2)):
        t = np.array([r[j] for r in rows_t])
        assert ds.info["mean"][col] == pytest.approx(t.mean()) and ds.info["std"][col] == pytest.approx(t.std())
        k = ds.info["columns"].index(col)
        np.testing.assert_allclose(ds.train[0][:, k], (t - t.mean()) / t.std(), rtol=1e-5)
        v = np.array([r[j] for r in rows_v])      # val rows: the TRAINING statistics, not their own
        np.testing.assert_allclose(ds.val[0][:, k], (v - t.mean()) / t.std(), rtol=1e-5)
    onehot = ds.train[0][:, 1:1 + len(cats)]
    np.testing.assert_array_equal(onehot, [[float(r[1] == c) for c in cats] for r in rows_t])
    assert ds.num_classes == 2 and ds.info["class_names"] == ["cat", "dog"]
    np.testing.assert_array_equal(ds.train[1], [["cat", "dog"].index(r[3]) for r in rows_t])
    assert ds.train[0].dtype == np.float32 and ds.train[1].dtype == np.int64


def test_features_by_name_integer_and_float_labels(tmp_path):
    p = _write(tmp_path / "t.csv", [(r[0], r[1], r[2], int(r[3] == "dog")) for r in ROWS])
    ds = open_dataset("csv", path=p, inputs=_inputs(1), options={"label": "kind", "features": "height"})
    assert ds.info["columns"] == ["height"] and ds.task == "classification" and ds.train[1].dtype == np.int64
    ds = open_dataset("csv", path=p, inputs=_inputs(2), options={"label": "height", "features": ["age", "kind"]})
    assert ds.task == "regression" and ds.num_classes is None and ds.train[1].dtype == np.float32
    # a numeric column can be forced categorical
    ds = open_dataset("csv", path=p, inputs=_inputs(2), options={"label": "height", "features": ["kind"],
                                                                  "categorical": ["kind"], "split": 0.5})
    assert ds.info["columns"] == ["kind=0", "kind=1"]


def test_unknown_category_in_val_is_an_error_or_zeros(tmp_path):
    train = _write(tmp_path / "train.csv")
    val = _write(tmp_path / "val.csv", [(30.0, "purple", 170.0, "cat"), (40.0, "red", 180.0, "dog")])
    opts = {"label": "kind", "val": str(val)}
    with pytest.raises(DlcError) as e:
        open_dataset("csv", path=train, inputs=_inputs(5), options=opts)
    assert f"{val}:2:" in e.value.message and "'purple'" in e.value.message
    ds = open_dataset("csv", path=train, inputs=_inputs(5), options={**opts, "unknown": "zeros"})
    assert len(ds.train[0]) == 10 and len(ds.val[0]) == 2
    np.testing.assert_array_equal(ds.val[0][0, 1:4], [0, 0, 0])
    np.testing.assert_array_equal(ds.val[0][1, 1:4], [0, 0, 1])      # blue, green, red: red


def test_ragged_row_names_file_and_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,label\n1,2,0\n\n3,4,1\n5,6\n7,8,1\n")
    with pytest.raises(DlcError) as e:
        open_dataset("csv", path=p, inputs=_inputs(2))
    assert e.value.message.startswith(f"{p}:5: the row has 2 fields, the header has 3")


def test_header_required_and_columns_checked(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("1,2,0\n3,4,1\n")
    with pytest.raises(DlcError, match="looks like data, not a header"):
        open_dataset("csv", path=p, inputs=_inputs(2))
    p.write_text("a,b,y\n1,2,0\n")
    with pytest.raises(DlcError) as e:
        open_dataset("csv", path=p, inputs=_inputs(2))
    assert "no column 'label'" in e.value.message and "a, b, y" in e.value.hint
    p.write_text("a,b,label\n1,x,0\n2,y,1\n4,x,0\n5,y,1\n")
    with pytest.raises(DlcError, match="gives 3 features .a, b=x, b=y., the model input 'x' takes .2,."):
        open_dataset("csv", path=p, inputs=_inputs(2), options={"split": 0.25})


def test_numeric_column_with_text_in_val_names_the_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,label\n1,0\n2,1\n3,0\n")
    v = tmp_path / "v.csv"
    v.write_text("a,label\n4,0\nn/a,1\n")
    with pytest.raises(DlcError, match=f"{v}:3: column 'a' is numeric"):
        open_dataset("csv", path=p, inputs=_inputs(1), options={"val": str(v)})


def test_label_outside_the_class_range_names_the_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,label\n1,0\n2,1\n3,4\n4,0\n")
    with pytest.raises(DlcError) as e:
        open_dataset("csv", path=p, inputs=_inputs(1), num_classes=3)
    assert e.value.message.startswith(f"{p}:4: label 4 is outside the class range 0..2")
    p.write_text("a,label\n1,0\n2,-1\n")
    with pytest.raises(DlcError, match=":3: label -1 is outside"):
        open_dataset("csv", path=p, inputs=_inputs(1))


SPEC = """
model Tab(x: f32[N, 5]) -> f32[N, 2] {
    example N = 1
    output = dense(dense(x, 16) |> relu, 2)
    return output
}

train Tab on csv {
    loss      = cross_entropy(output, label)
    optimizer = adam(lr=2e-2)
    epochs    = 30
    batch     = 8
    data      = csv("table.csv", label="kind", split=0.25)
}
"""


def test_dlc_train_on_a_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(80):
        dog = int(rng.integers(0, 2))
        rows.append((round(30 + 15 * dog + rng.normal(0, 3), 2), ["red", "blue", "green"][int(rng.integers(0, 3))],
                     round(170 + rng.normal(0, 8), 1), ["cat", "dog"][dog]))
    _write(tmp_path / "table.csv", rows)
    spec = tmp_path / "tab.dln"
    spec.write_text(SPEC)
    r = CliRunner().invoke(main, ["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code == 0, r.output
    best = float(r.output.split("'val_accuracy': ")[1].split("}")[0])
    assert best >= 0.9, r.output                       # age separates the classes
    # the command line names another label column, with 3 classes: more than the model outputs
    r = CliRunner().invoke(main, ["train", str(spec), "--data-option", "label=colour", "--out", str(tmp_path / "r2"),
                                  "--no-progress"])
    assert r.exit_code != 0 and "the model outputs 2" in r.output and "Traceback" not in r.output
