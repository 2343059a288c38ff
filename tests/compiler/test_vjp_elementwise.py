"""VJP rules of elementwise and matrix ops: finite differences and torch.autograd."""
import numpy as np
import pytest

from op_inputs import OP_ROWS
from vjp_harness import Arr, check_fd, check_torch, make_inputs

torch = pytest.importorskip("torch")
F = torch.nn.functional

S = (3, 4)
POS = Arr(np.random.default_rng(5).uniform(0.5, 2.0, S), True)  # for log, sqrt, pow bases

CASES = [
    ("neg", [S], {}, torch.neg), ("abs", [S], {}, torch.abs), ("square", [S], {}, torch.square),
    ("exp", [S], {}, torch.exp), ("log", [POS], {}, torch.log), ("log1p", [POS], {}, torch.log1p),
    ("sqrt", [POS], {}, torch.sqrt), ("rsqrt", [POS], {}, torch.rsqrt), ("reciprocal", [POS], {}, torch.reciprocal),
    ("sin", [S], {}, torch.sin), ("cos", [S], {}, torch.cos), ("tanh", [S], {}, torch.tanh),
    ("sigmoid", [S], {}, torch.sigmoid), ("erf", [S], {}, torch.erf), ("relu", [S], {}, F.relu),
    ("relu6", [Arr(np.random.default_rng(1).uniform(-3, 9, S), True)], {}, F.relu6),
    ("hardtanh", [S], {"min_val": -0.5, "max_val": 0.7}, lambda x: F.hardtanh(x, -0.5, 0.7)),
    ("leaky_relu", [S], {"negative_slope": 0.1}, lambda x: F.leaky_relu(x, 0.1)),
    ("elu", [S], {"alpha": 1.3}, lambda x: F.elu(x, 1.3)), ("selu", [S], {}, F.selu),
    ("silu", [S], {}, F.silu), ("gelu", [S], {"approximate": "none"}, F.gelu),
    ("gelu", [S], {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    ("softplus", [S], {"beta": 2.0, "threshold": 1.0}, lambda x: F.softplus(x, 2.0, 1.0)),
    ("hardsigmoid", [Arr(np.random.default_rng(3).uniform(-5, 5, S), True)], {}, F.hardsigmoid),
    ("add", [(2, 3, 4), (3, 1)], {}, torch.add), ("sub", [(3, 4), (4,)], {}, torch.sub),
    ("mul", [(2, 1, 4), (3, 1)], {}, torch.mul), ("div", [S, POS], {}, torch.div),
    ("pow", [POS, (3, 4)], {}, torch.pow),
    ("maximum", [S, (4,)], {}, torch.maximum), ("minimum", [S, S], {}, torch.minimum),
    ("where", [Arr(np.random.default_rng(4).random(S) < 0.5), S, (4,)], {}, torch.where),
    ("prelu", [(2, 3, 4), (3,)], {}, F.prelu), ("prelu", [(2, 3), (1,)], {}, F.prelu),
    ("softmax", [(2, 5)], {"axis": -1}, lambda x: F.softmax(x, -1)),
    ("softmax", [(3, 4, 2)], {"axis": 1}, lambda x: F.softmax(x, 1)),
    ("log_softmax", [(2, 5)], {"axis": 1}, lambda x: F.log_softmax(x, 1)),
    ("cast", [S], {"dtype": "float64"}, lambda x: x),
    ("matmul", [(3, 4), (4, 5)], {}, torch.matmul), ("matmul", [(2, 3, 4), (4,)], {}, torch.matmul),
    ("matmul", [(4,), (2, 4, 3)], {}, torch.matmul), ("matmul", [(2, 1, 3, 4), (5, 4, 2)], {}, torch.matmul),
    ("reshape", [(2, 3, 4)], {"shape": (4, -1)}, lambda x: x.reshape(4, -1)),
    ("expand", [(3, 1)], {"shape": (2, 3, 4)}, lambda x: x.expand(2, 3, 4)),
    ("transpose", [(2, 3, 4)], {"axes": (2, 0, 1)}, lambda x: x.permute(2, 0, 1)),
    ("linear", [(5, 4), (3, 4), (3,)], {}, F.linear), ("linear", [(2, 5, 4), (3, 4), None], {}, F.linear),
]
# the per-op table every backend test shares: float64 inputs from its makers
_rng = np.random.default_rng(6)
CASES += [(r.op, [Arr(make(_rng, np.float64), True) for make in r.inputs], r.attrs, r.ref) for r in OP_ROWS]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_finite_differences(case):
    op, specs, attrs, _ = case
    check_fd(op, make_inputs(specs), attrs)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_matches_torch_autograd(case):
    op, specs, attrs, fn = case
    check_torch(op, make_inputs(specs), attrs, fn)
