"""How a train section names a data source: `data = source("path", option=...)`."""
import pytest
from click.testing import CliRunner

from dlc.cli import _parse_data_options, main
from dlc.frontend.modules import clear_cache, load_module
from dlc.frontend.train import train_settings

MODEL = """model M(x: f32[N, 4]) -> f32[N, 2] {
    example N = 1
    output = dense(x, 2)
    return output
}
"""


def _spec(tmp_path, head: str, data: str):
    p = tmp_path / "sub" / "m.dln"
    p.parent.mkdir(exist_ok=True)
    p.write_text(MODEL + f"\n{head} {{\n    loss = cross_entropy(output, label)\n    data = {data}\n}}\n")
    clear_cache()
    return p


def _settings(p):
    mod = load_module(str(p))
    return train_settings(mod, mod.trains[0])


def test_a_source_call_sets_the_data_set_its_path_and_options(tmp_path):
    p = _spec(tmp_path, "train M", 'csv("t.csv", label="kind", features=["a", "b"], val="v.csv", split=0.1)')
    s = _settings(p)
    assert s.dataset == "csv"
    assert s.data_path == str(p.parent / "t.csv")                     # relative to the .dln file
    assert s.data_args == {"label": "kind", "features": ["a", "b"], "val": str(p.parent / "v.csv"), "split": 0.1}
    p = _spec(tmp_path, "train M on npz", '"/abs/d.npz"')
    s = _settings(p)
    assert s.dataset == "npz" and s.data_path == "/abs/d.npz" and s.data_args == {}
    p = _spec(tmp_path, "train M on image_folder", 'image_folder(path="imgs", mean=[0.5], std=[0.25])')
    s = _settings(p)
    assert s.data_path == str(p.parent / "imgs") and s.data_args == {"mean": [0.5], "std": [0.25]}


@pytest.mark.parametrize("head,data,line,col,message", [
    ("train M", 'csv("t.csv", colour="x")', 9, 25, "csv has no option 'colour'"),
    ("train M", 'tsv("t.tsv")', 9, 12, "unknown data source 'tsv'"),
    ("train M", 'csv("a.csv", "b.csv")', 9, 12, "csv takes one positional argument"),
    ("train M", "3", 9, 12, "data is a path or a data source call"),
    ("train M on npz", 'csv("t.csv")', 9, 12, "the section trains on npz but data reads csv"),
    ("train M on images", '"imgs"', 7, 1, "unknown data set 'images'"),
])
def test_bad_data_settings_are_located(tmp_path, head, data, line, col, message):
    p = _spec(tmp_path, head, data)
    r = CliRunner().invoke(main, ["check", str(p)])
    assert r.exit_code != 0
    assert f"{p}:{line}:{col}: error: {message}" in r.output, r.output
    assert "Traceback" not in r.output


def test_command_line_option_values():
    got = _parse_data_options(["mean=0.5,0.5,0.5", "label=species", "size=32", "features=a,b", 'x=[1, 2]',
                               "flag=true", 'q="3"', "cache=/tmp/c"])
    assert got == {"mean": [0.5, 0.5, 0.5], "label": "species", "size": 32, "features": ["a", "b"], "x": [1, 2],
                   "flag": True, "q": "3", "cache": "/tmp/c"}


def test_unknown_command_line_option_is_named(tmp_path):
    p = _spec(tmp_path, "train M", 'csv("t.csv")')
    (p.parent / "t.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n")
    r = CliRunner().invoke(main, ["train", str(p), "--data-option", "colums=a", "--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and "csv has no option 'colums'" in r.output and "its options: path, label" in r.output
