"""The ONNX backend node tests of the installed onnx (`onnx.backend.test.case.node`), imported
by dlc and run on each backend against the expected outputs at each test's tolerances.

Default run: every node test on NumPy; torch and TVM on a fixed sample.  The full torch and
TVM sweeps over every case are marked `slow` (--runslow).  A test in the expected-failure list
(`node_expected_failures.py`, each with its reason) must fail: one that passes fails the run
("remove it from the list"), so the list stays exact.  Pass rates:
`python tests/onnx/node_harness.py numpy|torch|tvm`.
"""
from __future__ import annotations

import pytest

pytest.importorskip("onnx")

import node_expected_failures as xf
import node_harness as h

CASES = sorted(h.all_cases())
EXPECTED = {"numpy": xf.NUMPY, "torch": xf.TORCH, "tvm": xf.TVM}
# fixed samples for the default run: spread over the alphabet (so over the ops)
TORCH_SAMPLE = CASES[::40]
# the TVM list covers every case (the whole sweep takes about 7 minutes on two cores with a cold
# cache); the default run compiles a sample spread over the alphabet: every 40th passing case of
# every 3rd case
TVM_MEASURED = CASES
TVM_SAMPLE = [n for n in CASES[::3] if n not in xf.TVM][::40]


def _check(name: str, backend: str) -> None:
    why = h.run_case(h.all_cases()[name], backend)
    expected = EXPECTED[backend].get(name)
    if expected is not None:
        if why is None:
            pytest.fail(f"{name} passes on {backend} now: remove it from node_expected_failures.{backend.upper()}")
        pytest.xfail(expected)
    assert why is None, f"{name} on {backend}: {why}"


@pytest.mark.parametrize("name", CASES)
def test_node_numpy(name):
    _check(name, "numpy")


@pytest.mark.torch
@pytest.mark.parametrize("name", TORCH_SAMPLE)
def test_node_torch_sample(name):
    pytest.importorskip("torch")
    _check(name, "torch")


@pytest.mark.tvm
@pytest.mark.parametrize("name", TVM_SAMPLE)
def test_node_tvm_sample(name):
    pytest.importorskip("tvm")
    _check(name, "tvm")


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("name", CASES)
def test_node_torch_full(name):
    pytest.importorskip("torch")
    _check(name, "torch")


@pytest.mark.slow
@pytest.mark.tvm
@pytest.mark.parametrize("name", TVM_MEASURED)
def test_node_tvm_full(name):
    pytest.importorskip("tvm")
    _check(name, "tvm")


def test_expected_failure_lists_are_well_formed():
    for backend, table in EXPECTED.items():
        unknown = sorted(set(table) - set(CASES))
        assert not unknown, f"{backend}: not node tests of this onnx: {unknown[:5]}"
        empty = [n for n, why in table.items() if not why.strip()]
        assert not empty, f"{backend}: failures without a reason: {empty[:5]}"
