"""The dlc command line: check, info, ir, run."""
import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from dlc.cli import main

LENET = "specs/lenet5.dln"


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_check_is_quiet_on_success():
    r = run("check", LENET)
    assert r.exit_code == 0 and r.output == ""


def test_info_json_has_params_macs_and_rows():
    r = run("info", LENET, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["params"] == 61706
    assert isinstance(data["macs"], int) and data["macs"] == 416520
    assert [row["name"] for row in data["layers"]] == ["c1", "c3", "f5", "f6", "output"]
    assert sum(row["params"] for row in data["layers"]) == data["params"]


def test_info_table_and_bind_scales_macs():
    r = run("info", LENET, "--bind", "N=4")
    assert r.exit_code == 0
    assert "61,706" in r.output and "1,666,080" in r.output


def test_ir_shows_types_and_locations():
    r = run("ir", LENET)
    assert r.exit_code == 0
    assert "conv2d(image, @c1.weight, @c1.bias)" in r.output
    assert "f32[N, 6, 28, 28]" in r.output and "lenet5.dln:7:" in r.output
    r = run("ir", LENET, "--mode", "train")
    assert "mode=train" in r.output


def test_run_with_inputs_weights_and_output_file(tmp_path):
    from dlc.api import load
    from dlc.runtime.weights import save_weights
    m = load(LENET)
    w = m.init_weights(seed=5)
    save_weights(tmp_path / "w.safetensors", w)
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    r = run("run", LENET, "--input", f"image={tmp_path / 'x.npy'}", "--weights", str(tmp_path / "w.safetensors"),
            "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "(3, 10)" in r.output
    got = np.load(out)["output"]
    np.testing.assert_allclose(got, m.run({"image": x}, w)["output"], rtol=1e-6)
    assert not list(tmp_path.glob(".*tmp")), "temporary files left behind"


def test_run_is_reproducible_with_seed(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run("run", LENET, "--seed", "3", "-o", str(a)).exit_code == 0
    assert run("run", LENET, "--seed", "3", "-o", str(b)).exit_code == 0
    np.testing.assert_array_equal(np.load(a)["output"], np.load(b)["output"])


def test_unbound_dimension_without_example_is_named(tmp_path):
    p = tmp_path / "m.dln"
    p.write_text("model M(x: f32[B, 4]) {\n    return dense(x, 2)\n}\n")
    r = run("run", str(p))
    assert r.exit_code == 1
    assert "B" in r.output and "--bind" in r.output
    assert run("run", str(p), "--bind", "B=2").exit_code == 0


def test_errors_exit_nonzero_without_traceback(tmp_path):
    p = tmp_path / "bad.dln"
    p.write_text("model M(x: f32[N, 4]) {\n    y = dense(x, 3)\n    return y + x\n}\n")
    proc = subprocess.run([sys.executable, "-m", "dlc.cli", "check", str(p)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{p}:3:12: error:")
    assert "f32[N, 3]" in proc.stderr and "f32[N, 4]" in proc.stderr
    assert "^" in proc.stderr and "hint:" in proc.stderr and "Traceback" not in proc.stderr


def test_import_dlc_does_not_import_torch():
    code = "import sys, dlc; dlc.load('specs/lenet5.dln').run(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_language_reference_lists_every_op():
    """docs/language.md's op table is generated from the registry: it must not go stale."""
    from pathlib import Path

    from dlc.compiler.ops import OPS
    from dlc.compiler.ops.doc_table import rewrite
    text = Path("docs/language.md").read_text()
    missing = [n for n in OPS if f"| `{n}` |" not in text]
    assert not missing, f"docs/language.md does not list {missing}"
    assert rewrite(text) == text, "docs/language.md's op table is stale: run python -m dlc.compiler.ops.doc_table"
