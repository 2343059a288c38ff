"""Errors that teach: the message says what went wrong and the hint how to fix it.

`split(x, 58, axis=1)` written in PyTorch's sense (a part size), an input of
the wrong size (which constant or `--bind` sets it), an empty or malformed
layer name (what a name may be).
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import dlc
from dlc.errors import DlcError
from dlc.frontend.modules import clear_cache


def _load(tmp_path, text: str, **kw):
    clear_cache()
    p = tmp_path / "m.dln"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return dlc.load(p, **kw)


def _error(tmp_path, text: str, **kw) -> DlcError:
    with pytest.raises(DlcError) as ei:
        _load(tmp_path, text, **kw)
    return ei.value


def test_split_unpacked_in_torch_sense_names_chunk_and_the_sizes(tmp_path):
    e = _error(tmp_path, """
        model M(x: f32[N, 116, 8, 8]) {
            a, b = split(x, 58, axis=1)
            return a + b
        }
    """)
    assert "cannot unpack a tuple of 58 into 2 names" in e.message
    assert e.span.line == 2
    assert "torch.chunk" in e.hint and "split(x, 2, axis=1)" in e.hint
    assert "split(x, [58, 58], axis=1)" in e.hint


def test_the_suggested_split_is_right(tmp_path):
    m = _load(tmp_path, """
        model M(x: f32[N, 116, 8, 8]) {
            example N = 1
            a, b = split(x, [58, 58], axis=1)
            return a
        }
    """)
    x = np.arange(116 * 64, dtype=np.float32).reshape(1, 116, 8, 8)
    np.testing.assert_array_equal(m.run({"x": x})["a"], x[:, :58])


def test_split_that_does_not_divide_gives_the_sizes_list(tmp_path):
    e = _error(tmp_path, """
        model M(x: f32[N, 100]) {
            parts = split(x, 40, axis=1)
            return parts[0]
        }
    """)
    assert "do not divide into 40 equal parts" in e.message
    assert "torch.split(x, 40)" in e.hint and "split(x, [40, 40, 20], axis=1)" in e.hint


def test_unpacking_other_tuples_keeps_the_plain_hint(tmp_path):
    e = _error(tmp_path, """
        model M(x: f32[N, 4]) {
            a, b = (x, x, x)
            return a
        }
    """)
    assert "cannot unpack a tuple of 3 into 2 names" in e.message
    assert "split" not in e.hint


SIZED = """
    const size = 32
    model M(x: f32[N, 3, size, size]) {
        example N = 2
        return relu(x)
    }
"""


def test_wrong_input_size_names_the_constant_and_bind(tmp_path):
    m = _load(tmp_path, SIZED)
    x = np.zeros((2, 3, 64, 64), np.float32)
    with pytest.raises(DlcError) as ei:
        m.run({"x": x})
    e = ei.value
    assert "has shape (2, 3, 64, 64)" in e.message
    assert "axes 2, 3: the constant size = 32" in e.hint and "(line 1)" in e.hint
    assert "--bind size=64" in e.hint
    # and the advice works
    out = _load(tmp_path, SIZED, bind={"size": 64}).run({"x": x})
    assert out["output"].shape == (2, 3, 64, 64)


def test_wrong_input_size_names_a_bound_dimension(tmp_path):
    m = _load(tmp_path, SIZED)
    with pytest.raises(DlcError) as ei:
        m.run({"x": np.zeros((2, 3, 32, 32), np.float32)}, bind={"N": 5})
    assert "the dimension N, bound to 5 by --bind N=5" in ei.value.hint


def test_wrong_input_size_from_a_literal(tmp_path):
    m = _load(tmp_path, SIZED)
    with pytest.raises(DlcError) as ei:
        m.run({"x": np.zeros((2, 4, 32, 32), np.float32)})
    assert "axis 1: fixed at 3 by the spec's input type" in ei.value.hint


def test_wrong_input_size_via_cli(tmp_path):
    from click.testing import CliRunner
    from dlc.cli import main
    (tmp_path / "m.dln").write_text(textwrap.dedent(SIZED).lstrip("\n"))
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 48, 48), np.float32))
    clear_cache()
    r = CliRunner().invoke(main, ["run", str(tmp_path / "m.dln"), "-i", f"x={tmp_path / 'x.npy'}"])
    assert r.exit_code != 0
    assert "--bind size=48" in r.output


@pytest.mark.parametrize("name, message", [
    ('""', "a layer name cannot be empty"),
    ('"conv 1"', "invalid layer name 'conv 1': it contains ' '"),
    ('"a..b"', "a dot must separate two words"),
    ('"head."', "a dot must separate two words"),
    ("3", "a layer name must be a string, got the int 3"),
])
def test_bad_layer_names_say_what_is_allowed(tmp_path, name, message):
    e = _error(tmp_path, f"""
        model M(x: f32[N, 4]) {{
            y = dense(x, 2, name={name})
            return y
        }}
    """)
    assert message in e.message
    assert e.span.line == 2
    assert "letters, digits and _ separated by dots" in e.hint
