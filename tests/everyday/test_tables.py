"""`dlc info` and `dlc run` tables: full names and numbers when piped or on a
narrow terminal, and `--format table|md|csv|json` (issue 15, "Tables")."""
import csv
import io
import json

import numpy as np
from click.testing import CliRunner

import dlc
from dlc.cli import main
from dlc.reporting import info_tables, output_stats, outputs_table
from dlc.tables import render


def _cli(*args):
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_piped_info_prints_every_name_and_number_in_full():
    out = _cli("info", "specs/resnet50.dln")            # CliRunner's stdout is not a terminal
    data = dlc.load("specs/resnet50.dln").info()
    assert "…" not in out and "┃" not in out
    lines = out.splitlines()
    for r in data["layers"]:
        row = next(ln for ln in lines if ln.split()[:1] == [r["name"]])
        assert r["kind"] in row and r["shape"] in row, row
        if r["macs"]:
            assert f"{r['macs']:,}" in row, row
    assert f"{data['params']:,}" in out and f"{data['macs']:,}" in out


def test_piped_run_prints_full_statistics():
    out = _cli("run", "specs/mlp.dln", "--seed", "3")
    m = dlc.load("specs/mlp.dln")
    outs = m.run(seed=3)
    assert "…" not in out
    for name, a in outs.items():
        f = np.asarray(a, np.float64)
        row = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        for v in (f.mean(), f.std(), f.min(), f.max()):
            assert f"{v:.6g}" in row, (v, row)


def test_narrow_terminal_gets_plain_columns_and_wide_one_a_box_table():
    tables = info_tables(dlc.load("specs/resnet18.dln").info())
    narrow = render(tables, "table", terminal_width=60)
    wide = render(tables, "table", terminal_width=200)
    assert "…" not in narrow and "┃" not in narrow and "layer4.1.conv2" in narrow
    assert max(len(ln) for ln in narrow.splitlines()) > 60     # the terminal wraps it; nothing is cut
    assert "┃" in wide and "layer4.1.conv2" in wide and "…" not in wide


def test_info_csv_and_md_and_json_agree_with_the_model():
    data = dlc.load("specs/lenet5.dln").info()
    rows = list(csv.DictReader(io.StringIO(_cli("info", "specs/lenet5.dln", "--format", "csv"))))
    assert [r["layer"] for r in rows] == [r["name"] for r in data["layers"]]
    assert [int(r["params"]) for r in rows] == [r["params"] for r in data["layers"]]
    assert [int(r["MACs"]) for r in rows] == [r["macs"] for r in data["layers"]]
    md = _cli("info", "specs/lenet5.dln", "--format", "md").splitlines()
    head = md.index("| layer | op | output | params | MACs | line |")
    assert md[head + 1] == "|---|---|---|---:|---:|---:|"
    body = [ln for ln in md[head + 2:] if ln.startswith("| ")]
    assert len(body) == len(data["layers"]) and "| c1 | conv2d |" in body[0]
    assert json.loads(_cli("info", "specs/lenet5.dln", "--format", "json")) == data


def test_run_json_and_csv_carry_full_precision():
    m = dlc.load("specs/mlp.dln")
    want = output_stats(m.run(seed=1))
    got = json.loads(_cli("run", "specs/mlp.dln", "--seed", "1", "--format", "json"))["outputs"]
    assert got == want
    rows = list(csv.DictReader(io.StringIO(_cli("run", "specs/mlp.dln", "--seed", "1", "--format", "csv"))))
    assert [float(r["mean"]) for r in rows] == [s["mean"] for s in want]
    assert [float(r["max"]) for r in rows] == [s["max"] for s in want]


def test_empty_output_statistics_are_dashes_not_zeros():
    stats = output_stats({"y": np.zeros((0, 3), np.float32)})
    assert stats[0]["mean"] is None and stats[0]["finite"] is True
    text = render([outputs_table(stats)], "table", None)
    assert "(0, 3)" in text and " 0 " not in text.splitlines()[-1]


def test_info_memory_csv_has_plain_byte_counts():
    out = _cli("info", "specs/mlp.dln", "--memory", "--format", "csv")
    layers, memory = out.split("\n\n")
    rows = {r[0]: r[1:] for r in csv.reader(io.StringIO(memory))}
    data = dlc.load("specs/mlp.dln").info(memory=True)["memory"]
    assert rows["planned peak (reused buffers)"] == [str(data["before"]["planned_bytes"]),
                                                     str(data["after"]["planned_bytes"])]
    assert rows["kernels"] == [str(data["before"]["kernels"]), str(data["after"]["kernels"])]
