"""Running packages on a TVM RPC server (here: one on localhost)."""
import socket
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import dlc  # noqa: E402
from dlc.backends.tvm import cache as tvm_cache  # noqa: E402
from dlc.backends.tvm.package import example_input_specs, write_package  # noqa: E402
from dlc.backends.tvm.rpc import parse_addr, run_package_remote  # noqa: E402
from dlc.bench import bench  # noqa: E402
from dlc.errors import DlcError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from tvm import rpc
    port = _free_port()
    srv = rpc.Server(host="127.0.0.1", port=port, port_end=port + 50, silent=True)
    try:
        yield f"127.0.0.1:{srv.port}"
    finally:
        srv.terminate()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "dlc-cache-rpc"))


def test_mlp_package_over_rpc_matches_reference(server, tmp_path):
    m = dlc.load(ROOT / "specs/mlp.dln")
    cm, _ = tvm_cache.compile_cached(m.graph, "cpu")
    w = m.init_weights(0)
    out = tmp_path / "mlp.dlcpkg"
    write_package(out, cm, w, source_hash="h", spec_path="specs/mlp.dln", model_name=m.name, target_name="cpu",
                  example_inputs=example_input_specs(m._elaborate("eval")))
    x = m.random_inputs(1, bind={"N": 6})
    outs, times = run_package_remote(server, out, x, repeat=3)
    ref = m.run(x, w)["output"]
    np.testing.assert_allclose(outs["output"], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert len(times) == 3 and all(t > 0 for t in times)


def test_bench_command_over_rpc(server):
    res = bench(str(ROOT / "specs/lenet5.dln"), repeat=2, warmup=1, rpc_addr=server)
    assert res["model"] == "LeNet5" and "rpc" in res["where"] and res["median_ms"] > 0


def test_rpc_errors():
    with pytest.raises(DlcError, match="not an RPC address"):
        parse_addr("localhost")
    with pytest.raises(DlcError, match="cannot connect to the TVM RPC server"):
        from dlc.backends.tvm.rpc import connect
        connect(f"127.0.0.1:{_free_port()}", timeout=5)
