"""`dlc bench --backends/--baselines`: every backend and baseline checked
then timed at a tiny size, the JSON report's documented fields, the other
formats, and the errors for bad input (docs/benchmarking.md)."""
import json

import pytest
from click.testing import CliRunner

from dlc.bench_format import render
from dlc.cli import main

_THREAD_VARS = ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.fixture
def keep_env(monkeypatch):
    # bench pins the thread count through these variables: restore them after each test
    for v in _THREAD_VARS:
        monkeypatch.setenv(v, "")
    import torch
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def bench(*args):
    r = CliRunner().invoke(main, ["bench", *args])
    assert "Traceback" not in r.output, r.output
    return r


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    import torch
    n = torch.get_num_threads()
    path = tmp_path_factory.mktemp("bench") / "report.json"
    r = bench("specs/mlp.dln", "--backends", "numpy,torch,tvm", "--baselines", "torch-eager,torch-compile,onnxruntime",
              "--batch", "1", "--repeat", "2", "--warmup", "1", "--threads", "1", "--format", "json", "-o", str(path))
    torch.set_num_threads(n)
    return r, path


def test_every_backend_and_baseline_is_checked_and_timed(full_report):
    r, path = full_report
    assert r.exit_code == 0, r.output
    rep = json.loads(path.read_text())
    assert json.loads(r.stdout) == rep     # -o holds what was printed
    assert rep["schema"] == "dlc-bench/1" and rep["kind"] == "models" and rep["model"] == "MLP"
    assert rep["ok"] is True and rep["repeat"] == 2 and rep["warmup"] == 1 and rep["batches"] == [1]
    names = [row["name"] for row in rep["rows"]]
    assert names == ["numpy", "torch", "tvm", "torch-eager", "torch-compile", "onnxruntime"]
    for row in rep["rows"]:
        assert row["status"] == "ok" and row["batch"] == 1, row
        assert row["kind"] == ("baseline" if "-" in row["name"] or row["name"] == "onnxruntime" else "backend")
        assert row["check"]["ok"] and 0 <= row["check"]["error"] <= row["check"]["tolerance"] == 1e-4
        assert len(row["times_ms"]) == 2 and row["median_ms"] > 0
        assert row["q1_ms"] <= row["median_ms"] <= row["q3_ms"]
        assert row["iqr_ms"] == pytest.approx(row["q3_ms"] - row["q1_ms"])
        assert row["throughput_per_s"] == pytest.approx(1e3 / row["median_ms"])
        assert row["peak_mem_bytes"] is None or isinstance(row["peak_mem_bytes"], int)
        eager = next(x for x in rep["rows"] if x["name"] == "torch-eager")["median_ms"]
        assert row["ratio_to_torch_eager"] == pytest.approx(row["median_ms"] / eager)


def test_report_records_machine_versions_threads_and_method(full_report):
    rep = json.loads(full_report[1].read_text())
    mc = rep["machine"]
    assert mc["cpu"]["model"] and mc["cpu"]["cores"] >= 1 and isinstance(mc["cpu"]["isa"], list)
    assert isinstance(mc["gpu"], list) and mc["date"].startswith("20")
    assert set(mc["versions"]) >= {"dlc", "torch", "tvm", "numpy", "onnxruntime"}
    assert rep["threads"]["threads"] == 1 and rep["threads"]["torch"] == "torch.set_num_threads"
    assert rep["tolerances"]["float32"] == 1e-4 and "float64" in rep["reference"]
    assert "RSS" in rep["peak_memory_method"] and len(rep["loadavg_end"]) == 3


def test_markdown_and_csv_hold_every_row(full_report):
    rep = json.loads(full_report[1].read_text())
    md, csv = render(rep, "md"), render(rep, "csv")
    assert "| name | kind | batch |" in md and rep["machine"]["cpu"]["model"] in md
    lines = csv.strip().splitlines()
    assert lines[0].startswith("name,kind,batch,status,median_ms") and len(lines) == 1 + len(rep["rows"])


def _plant_wrong_tanh(monkeypatch):
    from dlc.backends.torch import lowering
    orig = lowering.LOWERING["tanh"]

    def wrong(*a, **k):
        s = orig(*a, **k)
        return type(s)(s.replace("torch.tanh(", "1.5 * torch.tanh("))
    monkeypatch.setitem(lowering.LOWERING, "tanh", wrong)


def test_a_wrong_kernel_is_reported_and_not_timed(monkeypatch, keep_env, tmp_path):
    _plant_wrong_tanh(monkeypatch)
    out = tmp_path / "r.json"
    r = bench("specs/lenet5.dln", "--backends", "numpy,torch", "--baselines", "torch-eager", "--repeat", "2",
              "--warmup", "1", "-o", str(out), "--format", "json")
    assert r.exit_code == 1
    assert "error: torch at batch 1: WRONG result, not timed" in r.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["torch"]["status"] == "wrong" and rows["torch"]["median_ms"] is None and "times_ms" not in rows["torch"]
    assert rows["torch"]["check"]["error"] > rows["torch"]["check"]["tolerance"]
    assert rows["numpy"]["status"] == rows["torch-eager"]["status"] == "ok"


def test_without_the_plant_the_same_bench_passes(keep_env):
    r = bench("specs/lenet5.dln", "--backends", "torch", "--baselines", "", "--repeat", "1", "--warmup", "0")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args, message", [
    (["--backends", "numpy,cuda"], "unknown backend 'cuda'"),
    (["--baselines", "torch-eager,tensorflow"], "unknown baseline 'tensorflow'"),
    (["--batch", "0"], "--batch sizes must be positive"),
])
def test_bad_names_are_clear_errors(args, message, keep_env):
    r = bench("specs/mlp.dln", *args)
    assert r.exit_code == 1 and message in r.output


def test_a_model_without_reference_lists_the_ones_with(keep_env):
    r = bench("specs/perceptron.dln", "--baselines", "torch-eager", "--backends", "numpy")
    assert r.exit_code == 1
    assert "model 'Perceptron' has no reference PyTorch module" in r.output
    assert "LeNet5" in r.output and "ResNet18" in r.output


def test_torch_compile_unavailable_is_reported_not_crashed(monkeypatch, keep_env, tmp_path):
    import dlc.bench_baselines as bb
    monkeypatch.setattr(bb, "cxx_compiler", lambda: None)
    out = tmp_path / "r.json"
    r = bench("specs/mlp.dln", "--backends", "", "--baselines", "torch-compile,torch-eager", "--repeat", "1",
              "--warmup", "0", "-o", str(out))
    assert r.exit_code == 1
    assert "torch-compile at batch 1: not run" in r.stderr and "C++ compiler" in r.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["torch-compile"]["status"] == "unavailable" and rows["torch-compile"]["median_ms"] is None
    assert rows["torch-eager"]["status"] == "ok"


def test_the_single_backend_form_still_works():
    r = bench("specs/mlp.dln", "--backend", "numpy", "--repeat", "2", "--warmup", "0")
    assert r.exit_code == 0 and "median" in r.output and "MLP [numpy" in r.output


def test_precision_bf16_checks_at_the_bf16_tolerance_and_runs_baselines_under_autocast(tmp_path):
    """--precision bf16: dlc's autocast pass against torch.autocast, both held
    to bfloat16's tolerance; onnxruntime (float32 only) says why it is not run."""
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["bench", "specs/mlp.dln", "--backends", "numpy,torch", "--baselines",
                                  "torch-eager,onnxruntime", "--precision", "bf16", "--batch", "4", "--repeat",
                                  "2", "--warmup", "1", "--threads", "1", "-o", str(out)])
    assert "Traceback" not in r.output, r.output
    rep = json.loads(out.read_text())
    assert rep["precision"] == "bf16" and "precision bf16" in r.stdout
    rows = {row["name"]: row for row in rep["rows"]}
    for name in ("numpy", "torch", "torch-eager"):
        chk = rows[name]["check"]
        assert rows[name]["status"] == "ok" and chk["dtype"] == "bfloat16" and chk["tolerance"] == 5e-2, rows[name]
        assert chk["error"] > 1e-4        # past float32's tolerance: the matmuls really ran in bfloat16
    assert rows["onnxruntime"]["status"] == "unavailable" and "no bf16 baseline" in rows["onnxruntime"]["reason"]
    assert r.exit_code == 1               # a requested baseline that cannot run is reported as such


def test_train_with_a_precision_is_refused_clearly():
    r = CliRunner().invoke(main, ["bench", "specs/mlp.dln", "--train", "--precision", "fp16", "--batch", "2"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "--train with --precision fp16 is not benchmarked yet" in r.output


def test_the_resnet50_reference_takes_the_spec_weights_and_agrees():
    """bench/reference's ResNet50 (gpu_check.sh's baseline): torchvision's names
    (strict load of dlc's weights) and the same outputs as the reference."""
    import numpy as np
    import dlc
    from dlc.bench_baselines import lively_weights, make_baseline
    from dlc.bench_check import compare, reference_outputs
    m = dlc.load("specs/resnet50.dln", bind={"size": 64})
    weights = lively_weights(m.init_weights(0), 0)
    inputs = m.random_inputs(0, {"N": 1})
    bl = make_baseline("torch-eager", "ResNet50", weights, [inputs["image"]], threads=1)
    chk = compare(bl.outputs(), reference_outputs(m, inputs, weights, {"N": 1}))
    assert chk["ok"] and 0 < chk["error"] < 1e-4, chk
    assert np.asarray(bl.outputs()[0]).shape == (1, 1000)


def test_without_a_gpu_tvm_cuda_and_cuda_baselines_say_why():
    """tvm-cuda and --device cuda on a machine without a GPU (or with CPU-only
    torch): a one-line reason, never a traceback (bench/gpu_check.sh's path)."""
    import torch
    import tvm
    if tvm.cuda(0).exist or torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = CliRunner().invoke(main, ["verify", "specs/mlp.dln", "--backends", "numpy,tvm-cuda"])
    assert r.exit_code == 1 and "needs an NVIDIA GPU" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["bench", "specs/mlp.dln", "--backends", "numpy", "--baselines",
                                  "torch-eager,onnxruntime", "--device", "cuda", "--repeat", "2", "--format", "json"])
    rep = json.loads(r.stdout)
    rows = {row["name"]: row for row in rep["rows"]}
    assert rows["numpy"]["status"] == "ok" and rep["baseline_device"] == "cuda"
    assert rows["torch-eager"]["status"] == "unavailable" and "sees no CUDA device" in rows["torch-eager"]["reason"]
    assert "CPU provider only" in rows["onnxruntime"]["reason"]
