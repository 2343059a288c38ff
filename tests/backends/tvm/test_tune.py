"""`dlc tune`: budgets, where databases live, and a short real tuning run of
the MLP whose records a later compile applies (the tuned kernels differ from
the default schedules and the outputs still equal the NumPy reference)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", str(max(1, min(os.cpu_count() or 1, 2))))
pytest.importorskip("tvm")
pytest.importorskip("psutil")

from click.testing import CliRunner
from dlc.backends.tvm import tune

import dlc
from dlc.errors import DlcError, DlcValueError

pytestmark = pytest.mark.tvm


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("20m", 1200), ("1h", 3600), ("1h30m", 5400),
                                          ("45", 45), ("2.5m", 150), ("1 h 5 min", 3900), (30, 30)])
def test_parse_budget(text, seconds):
    assert tune.parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "-5m", "0s", "m"])
def test_parse_budget_rejects(text):
    with pytest.raises(DlcValueError):
        tune.parse_budget(text)


def test_default_database_location(tmp_path, monkeypatch):
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    d = tune.default_db_dir("cpu")
    assert d.parent == tmp_path / "tuning" and len(d.name) == 16
    assert tune.default_db_dir("cpu") == d                     # stable
    assert tune.default_db_dir("aarch64") != d                  # per target
    assert tune.default_database("cpu") is None                 # nothing tuned yet
    assert tune.load_database(tmp_path / "nowhere") is None


def test_only_the_host_cpu_is_tunable():
    tune.check_tunable("cpu")
    for t in ("cuda", "aarch64"):
        with pytest.raises(DlcError):
            tune.check_tunable(t)


def test_tasks_are_mains_kernels_largest_first():
    m = dlc.load("specs/lenet5.dln")
    tasks, fixed, _ = tune.extract_tasks(m.graph, "cpu", {"N": 1})
    assert fixed.get("N") == 1
    assert len(tasks) >= 4
    totals = [t.total_flops for t in tasks]
    assert totals == sorted(totals, reverse=True) and totals[0] > 0
    assert not any(t.name.startswith("transpose") and t.flops == 0 and "conv" not in t.name
                   for t in tasks[:3])


def test_cli_tune_reports_and_writes_the_default_database(tmp_path, monkeypatch):
    from dlc.cli import main
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    res = CliRunner().invoke(main, ["tune", "specs/mlp.dln", "--target", "cpu", "--budget", "5s",
                                    "--bind", "N=1", "--trials-per-task", "4", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "fused_matmul" in res.output and "N=1" in res.output
    db_dir = tune.default_db_dir("cpu")
    assert (db_dir / tune.WORKLOAD_FILE).exists() and (db_dir / tune.RECORD_FILE).exists()
    assert not any(p.name.startswith(".tune-") for p in db_dir.iterdir())   # staging cleaned up


def test_tune_then_compile_applies_the_records(tmp_path, monkeypatch):
    """Records tuned into the default database ($DLC_CACHE_DIR) are picked up
    by `default_database` and change the compiled kernels; the outputs still
    equal the NumPy reference.  (keep_slower: on a busy machine a few trials
    may not beat the default schedule, which would leave nothing to apply.)"""
    import tvm_ffi
    from tvm import tirx

    from dlc.backends.tvm import pipeline
    from dlc.backends.tvm.compile import compile_graph
    from dlc.backends.tvm.relaxgen import lower_model
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    m = dlc.load("specs/mlp.dln")
    r = tune.tune_graph(m.graph, "cpu", budget_s=8, bind={"N": 1}, trials_per_task=4, progress=False,
                        keep_slower=True)
    assert r.trials > 0 and r.fixed_dims.get("N") == 1
    db_dir = tune.default_db_dir("cpu")
    assert r.db_dir == str(db_dir) and tune.count_records(db_dir) > 0
    for line in (db_dir / tune.RECORD_FILE).read_text().splitlines():
        json.loads(line)                                                      # whole lines only
    db = tune.default_database("cpu")
    assert db is not None and len(db) > 0

    tgt = pipeline.as_target(tune._target_dict("cpu"))
    low = lower_model(m.graph, {"N": 1})
    plain = pipeline.optimize(low.mod, tgt)
    tuned = pipeline.optimize(low.mod, tgt, database=db)
    kernels = {gv.name_hint: f for gv, f in plain.functions_items() if isinstance(f, tirx.PrimFunc)}
    changed = [gv.name_hint for gv, f in tuned.functions_items()
               if isinstance(f, tirx.PrimFunc) and gv.name_hint in kernels
               and not tvm_ffi.structural_equal(f, kernels[gv.name_hint])]
    assert any("matmul" in n for n in changed), changed

    w = m.init_weights(0)
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    ref = m.run({"x": x}, w)
    out = compile_graph(m.graph, "cpu", bind={"N": 1}, database=db).runner().set_weights(w).run({"x": x})
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-4, atol=1e-5)
