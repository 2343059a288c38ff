"""Every op is either differentiable (has a VJP rule, and a gradient test) or
documented as not differentiable."""
import re
from pathlib import Path

from dlc.compiler.ops import OPS

HERE = Path(__file__).parent
TEST_FILES = ["test_vjp_elementwise.py", "test_vjp_nn.py", "test_vjp_shape_loss.py", "test_vjp_recurrent.py",
              "passes/test_pass_fused_region.py", "test_vjp_resample.py"]


def test_every_op_has_a_vjp_rule_or_is_declared_non_differentiable():
    # ops without operands (full, sinusoidal_positions) have nothing to differentiate;
    # an op with a decomposition is differentiated through it when it has no rule
    missing = sorted(n for n, op in OPS.items()
                     if op.vjp is None and op.decompose is None and not op.nondiff and (op.operands or op.variadic))
    assert not missing, f"no VJP rule or decomposition for {missing} and not declared non-differentiable"


def test_non_differentiable_ops_are_the_documented_kinds():
    nondiff = {n for n, op in OPS.items() if op.nondiff}
    allowed = re.compile(r"^(argmax|argmin|eq|ne|lt|le|gt|ge|logical_.*|sign|floor|ceil|one_hot|arange|"
                         r"randn|uniform|.*_indices)$")
    assert all(allowed.match(n) for n in nondiff), sorted(n for n in nondiff if not allowed.match(n))


def test_every_differentiable_op_has_a_gradient_test():
    from op_inputs import OP_ROWS    # the shared per-op table: test_vjp_elementwise runs its rows
    text = "\n".join((HERE / f).read_text() for f in TEST_FILES)
    operand_free = {n for n, op in OPS.items() if not op.operands and not op.variadic}
    rows = {r.op for r in OP_ROWS}
    untested = sorted(n for n, op in OPS.items()
                      if (op.vjp is not None or op.decompose is not None) and not op.nondiff
                      and n not in operand_free and f'"{n}"' not in text and n not in rows)
    assert not untested, f"differentiable ops without a gradient test case: {untested}"
