"""Bad input gets a clear error, never a Python traceback.

Every case is a small malformed or ill-typed `.dln` spec.  `dlc check` must
exit non-zero and print

    file.dln:LINE:COL: error: MESSAGE
     LINE | the source line
          |     ^~~~
    hint: ...

with the expected line (and column, where one token is to blame), the
expected message, and no traceback.  Most cases run in-process through
click's CliRunner; a few run the installed `dlc` command in a subprocess.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dlc.cli import main as cli_main
from dlc.frontend.modules import clear_cache


def S(text: str) -> str:
    """Dedent a spec written inline; line 1 is the first line after the quotes."""
    return textwrap.dedent(text).lstrip("\n")


@dataclass
class Case:
    id: str
    spec: str
    line: int
    message: str
    anchor: str | None = None  # the caret sits on the first occurrence of this text in the line
    file: str = "main.dln"  # the file the error is reported in
    files: dict = field(default_factory=dict)  # other files next to main.dln
    hint: str | None = None  # a substring the hint must contain


DENSE_MODEL = S("""
    model M(x: f32[N, 4]) {
        return dense(x, 2)
    }
""")


def with_train(body: str) -> str:
    return DENSE_MODEL + "train M on digits {\n" + textwrap.indent(S(body), "    ") + "}\n"


CASES = [
    # ------------------------------------------------------------------ syntax
    Case("missing_closing_brace", S("""
        model M(x: f32[N, 4]) -> f32[N, 2] {
            y = dense(x, 2)
            return y
    """), 3, "unexpected end of file", hint="closing '}'"),
    Case("bad_token_dollar", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 2) $ 3
            return y
        }
    """), 2, "unexpected character '$'", "$"),
    Case("unterminated_string", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 2, name="abc)
            return y
        }
    """), 2, "unterminated string", '"abc', hint="matching"),
    Case("stray_character_backtick", S("""
        model M(x: f32[N, 4]) {
            y = relu(x)`
            return y
        }
    """), 2, "unexpected character '`'", "`"),
    Case("stray_non_ascii_character", S("""
        model M(x: f32[N, 4]) {
            y = relu(x) × 2
            return y
        }
    """), 2, "unexpected character '×'", "×"),
    Case("missing_comma", S("""
        model M(x: f32[N, 1, 8, 8]) {
            y = conv2d(x 2, kernel=3)
            return y
        }
    """), 2, "unexpected '2'", "2,", hint="','"),
    Case("extra_closing_paren", S("""
        model M(x: f32[N, 4]) {
            y = relu(x)) + 1
            return y
        }
    """), 2, "unexpected ')'", ") +"),
    Case("keyword_used_as_name", S("""
        model M(x: f32[N, 4]) {
            model = dense(x, 2)
            return model
        }
    """), 2, "unexpected 'model'", "model"),
    Case("missing_equals", S("""
        model M(x: f32[N, 4]) {
            y 2 * x
            return y
        }
    """), 2, "unexpected '2'", "2"),
    Case("fat_arrow_return_type", S("""
        model M(x: f32[N, 4]) => f32[N, 2] {
            return dense(x, 2)
        }
    """), 1, "unexpected '='", "=>"),
    Case("positional_after_keyword", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, units=2, true)
            return y
        }
    """), 2, "positional argument after keyword argument", "true"),
    Case("nesting_too_deep", S("""
        model M(x: f32[N, 4]) {
            y = relu(x)
            z = """ + "(" * 120 + "y" + ")" * 120 + """
            return z
        }
    """), 3, "nested more than 100 deep"),
    # ---------------------------------------------------------- unknown names
    Case("unknown_op_in_chain", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 2) |> frobnicate
            return y
        }
    """), 2, "unknown name 'frobnicate'", "frobnicate"),
    Case("unknown_function", S("""
        model M(x: f32[N, 1, 8, 8]) {
            y = convolve(x, 3)
            return y
        }
    """), 2, "unknown name 'convolve'", "convolve"),
    Case("misspelt_layer_suggests", S("""
        model M(x: f32[N, 4]) {
            y = dens(x, 3)
            return y
        }
    """), 2, "unknown name 'dens'", "dens", hint="did you mean 'dense'"),
    Case("unknown_variable", S("""
        model M(x: f32[N, 4]) {
            y = dense(z, 2)
            return y
        }
    """), 2, "unknown name 'z'", "z,"),
    Case("unknown_keyword_argument", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 2, foo=3)
            return y
        }
    """), 2, "dense: has no argument 'foo'", "dense", hint="signature: dense(x, units"),
    Case("unknown_block_parameter", S("""
        block B(c: int)(x) {
            return dense(x, c)
        }
        model M(x: f32[N, 4]) {
            return B(c=3, d=4)(x)
        }
    """), 5, "B has no parameter 'd'", "B(", hint="signature: B(c: int)(x)"),
    Case("unknown_dtype", S("""
        model M(x: q32[N, 4]) {
            return x
        }
    """), 1, "unknown dtype 'q32'", "q32"),
    Case("unknown_tensor_attribute", S("""
        model M(x: f32[N, 4]) {
            y = x.foo
            return y
        }
    """), 2, "a tensor has no attribute 'foo'", "x.foo"),
    Case("unknown_initialiser", S("""
        model M(x: f32[N, 4]) {
            param w: f32[4] = foo
            return x * w
        }
    """), 2, "unknown initialiser 'foo'", "foo"),
    Case("unknown_name_in_string_interpolation", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 4, name="fc{q}")
            return y
        }
    """), 2, "unknown name 'q'", '"fc{q}"'),
    # ------------------------------------------------------------------ arity
    Case("layer_missing_argument", S("""
        model M(x: f32[N, 4]) {
            y = dense(x)
            return y
        }
    """), 2, "dense: needs the argument 'units'", "dense"),
    Case("function_too_many_arguments", S("""
        model M(x: f32[N, 4]) {
            y = relu(x, x, x)
            return y
        }
    """), 2, "relu: too many positional arguments", "relu", hint="signature: relu(x)"),
    Case("block_too_many_tensor_arguments", S("""
        block B(c: int)(x) {
            return dense(x, c)
        }
        model M(x: f32[N, 4]) {
            y = B(3)(x, x)
            return y
        }
    """), 5, "B takes 1 tensor argument(s), got 2", "B(3)"),
    Case("block_too_many_compile_time_arguments", S("""
        block B(c: int)(x) {
            return dense(x, c)
        }
        model M(x: f32[N, 4]) {
            y = B(3, 4, 5)(x)
            return y
        }
    """), 5, "B takes 1 compile-time argument(s), got 3", "B(3"),
    Case("block_missing_compile_time_argument", S("""
        block B(c: int, d: int)(x) {
            return dense(x, c + d)
        }
        model M(x: f32[N, 4]) {
            y = B(3)(x)
            return y
        }
    """), 5, "B needs the argument 'd'", "B(3)"),
    Case("keyword_given_twice", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 2, bias=true, bias=false)
            return y
        }
    """), 2, "keyword argument 'bias' given twice", "bias=false"),
    # ----------------------------------------------------------------- shapes
    Case("add_shape_mismatch", S("""
        model M(x: f32[N, 4]) {
            a = dense(x, 3)
            b = dense(x, 5)
            y = a + b
            return y
        }
    """), 4, "add: shapes", "a + b", hint="broadcast"),
    Case("matmul_inner_dimensions", S("""
        model M(x: f32[N, 4], w: f32[5, 3]) {
            y = x @ w
            return y
        }
    """), 2, "matmul: inner dimensions differ", "x @ w"),
    Case("dense_output_into_block_of_wrong_width", S("""
        block Head()(h: f32[N, 10]) {
            return dense(h, 2)
        }
        model M(x: f32[N, 4]) {
            a = dense(x, 3)
            y = Head()(a)
            return y
        }
    """), 6, "argument 'h' is declared f32[N, 10] but got f32[N, 3]", "Head", hint="10 does not match 3"),
    Case("concat_rank_mismatch", S("""
        model M(x: f32[N, 4], z: f32[N, 3, 2]) {
            y = concat(x, z, axis=1)
            return y
        }
    """), 2, "concat: ranks differ", "concat"),
    Case("residual_connection_in_block", S("""
        block Residual(c: int)(x) {
            y = dense(x, c) |> relu
            return x + y
        }
        model M(x: f32[N, 4]) {
            y = Residual(8)(x)
            return y
        }
    """), 3, "add: shapes", "x + y", hint="broadcast"),
    Case("attention_heads_do_not_divide_width", S("""
        model M(x: f32[N, 5, 10]) {
            y = multihead_attention(x, heads=3)
            return y
        }
    """), 2, "3 heads do not divide the width 10", "multihead_attention", hint="1, 2, 5, 10"),
    Case("mutually_recursive_blocks", S("""
        block A(c: int)(x) {
            return B(c)(x)
        }
        block B(c: int)(x) {
            return A(c)(x)
        }
        model M(x: f32[N, 4]) {
            y = A(3)(x)
            return y
        }
    """), 5, "block 'A' is recursive: A -> B -> A", "A(c)"),
    Case("self_recursive_block", S("""
        block A(c: int)(x) {
            y = relu(x)
            return A(c)(y)
        }
        model M(x: f32[N, 4]) {
            return A(3)(x)
        }
    """), 3, "block 'A' is recursive: A -> A", "A(c)"),
    Case("reshape_element_count", S("""
        model M(x: f32[N, 4]) {
            y = reshape(x, N, 3)
            return y
        }
    """), 2, "cannot reshape f32[N, 4]", "reshape"),
    Case("conv_kernel_larger_than_input", S("""
        model M(x: f32[N, 1, 4, 4]) {
            y = conv2d(x, 4, kernel=9)
            return y
        }
    """), 2, "smaller than the kernel extent 9", "conv2d"),
    Case("conv_on_rank2_input", S("""
        model M(x: f32[N, 4]) {
            y = conv2d(x, 4, kernel=3)
            return y
        }
    """), 2, "conv2d expects a rank-4 input", "conv2d"),
    Case("index_out_of_range", S("""
        model M(x: f32[N, 4]) {
            y = x[:, 7]
            return y
        }
    """), 2, "index 7 is out of range for axis 1", "7]", hint="-4..3"),
    # ----------------------------------------------------------------- dtypes
    Case("integer_tensor_into_conv2d", S("""
        model M(x: i64[N, 1, 8, 8]) {
            y = conv2d(x, 4, kernel=3)
            return y
        }
    """), 2, "conv2d: input must be a floating-point tensor, got i64[N, 1, 8, 8]", "conv2d",
         hint="cast(x, f32)"),
    Case("f32_plus_f64", S("""
        model M(x: f32[N, 4], z: f64[N, 4]) {
            y = x + z
            return y
        }
    """), 2, "add: operands have different dtypes f32 and f64", "x + z"),
    Case("embedding_with_float_indices", S("""
        model M(tokens: f32[N, 16]) {
            y = embedding(tokens, 100, 8)
            return y
        }
    """), 2, "embedding indices must be integers", "embedding", hint="i64"),
    Case("integer_tensor_plus_float", S("""
        model M(x: i64[N, 4]) {
            y = x + 0.5
            return y
        }
    """), 2, "cannot combine the integer tensor i64[N, 4] with the float 0.5", "x + 0.5"),
    # ------------------------------------------------------ dimensions, sizes
    Case("zero_dimension", S("""
        model M(x: f32[N, 0]) {
            return x
        }
    """), 1, "dimension 0 is not positive", "0]"),
    Case("negative_dimension", S("""
        model M(x: f32[-3]) {
            return x
        }
    """), 1, "dimension -3 is not positive", "-3"),
    Case("float_dimension", S("""
        model M(x: f32[N, 4.5]) {
            return x
        }
    """), 1, "a dimension must be an int, got the float 4.5", "4.5"),
    Case("conv_with_zero_channels", S("""
        model M(x: f32[N, 1, 8, 8]) {
            y = conv2d(x, 0, kernel=3)
            return y
        }
    """), 2, "conv2d: channels must be >= 1, got 0", "conv2d"),
    Case("dense_of_terabytes", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 100000000000)
            return y
        }
    """), 2, "TiB", "dense", hint="typo"),
    Case("input_of_terabytes", S("""
        model M(x: f32[N, 1000000, 1000000]) {
            example N = 8
            return x
        }
    """), 1, "would take 29.1 TiB", "f32[N, 1000000"),
    Case("compile_time_loop_too_long", S("""
        model M(x: f32[N, 4]) {
            for i in range(1000000000) {
                x = relu(x)
            }
            return x
        }
    """), 2, "range of 1000000000 elements is too long", "range("),
    Case("nonpositive_example_size", S("""
        model M(x: f32[N, 4]) {
            example N = 0
            return x
        }
    """), 2, "example size of N must be a positive int", "N = 0"),
    Case("division_by_zero_in_size", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 4 // 0)
            return y
        }
    """), 2, "division by zero", "4 // 0"),
    # ---------------------------------------------------- control and values
    Case("model_returns_nothing", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 2)
        }
    """), 1, "model M returns nothing", "model", hint="return"),
    Case("model_bare_return", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 2)
            return
        }
    """), 3, "model M returns nothing", "return"),
    Case("block_returns_nothing", S("""
        block B(c: int)(x) {
            y = dense(x, c)
        }
        model M(x: f32[N, 4]) {
            return B(2)(x)
        }
    """), 1, "B returns nothing", "block"),
    Case("block_used_without_compile_time_args", S("""
        block B(c: int)(x) {
            return dense(x, c)
        }
        model M(x: f32[N, 4]) {
            y = B(x)
            return y
        }
    """), 5, "B: 'c' is a compile-time parameter, got a tensor", "B(x)", hint="B(...)(x)"),
    Case("block_in_chain_without_compile_time_args", S("""
        block B(c: int)(x) {
            return dense(x, c)
        }
        model M(x: f32[N, 4]) {
            y = x |> relu |> B
            return y
        }
    """), 5, "B: 'c' is a compile-time parameter, got a tensor", "B"),
    Case("if_on_a_tensor", S("""
        model M(x: f32[N, 4]) {
            if x {
                x = relu(x)
            }
            return x
        }
    """), 2, "a condition must be known at compile time, but this is a tensor", "x {", hint="where("),
    Case("for_over_a_tensor", S("""
        model M(x: f32[N, 4]) {
            for row in x {
                x = relu(x)
            }
            return x
        }
    """), 2, "for loops run at compile time", "x {", hint="scan"),
    Case("return_type_mismatch", S("""
        model M(x: f32[N, 4]) -> f32[N, 10] {
            y = dense(x, 2)
            return y
        }
    """), 1, "M returns f32[N, 2] but is declared to return f32[N, 10]", "f32[N, 10]"),
    Case("return_dtype_mismatch", S("""
        model M(x: f32[N, 4]) -> f64[N, 2] {
            return dense(x, 2)
        }
    """), 1, "M returns f32[N, 2] but is declared to return f64[N, 2]", "f64", hint="cast"),
    Case("model_returns_an_int", S("""
        model M(x: f32[N, 4]) {
            return 3
        }
    """), 1, "model M must return tensors, got the int 3", "model"),
    Case("failed_block_assertion", S("""
        block B(c: int)(x) {
            assert c > 3, "c must exceed 3"
            return dense(x, c)
        }
        model M(x: f32[N, 4]) {
            return B(2)(x)
        }
    """), 2, "c must exceed 3", "assert"),
    Case("compile_time_argument_of_wrong_type", S("""
        block B(c: int)(x) {
            return dense(x, c)
        }
        model M(x: f32[N, 4]) {
            return B("wide")(x)
        }
    """), 5, "B: 'c' must be int, got the string 'wide'", "B("),
    Case("constant_depends_on_itself", S("""
        const A = B + 1
        const B = A * 2
        model M(x: f32[N, 4]) {
            return dense(x, A)
        }
    """), 1, "constant 'A' depends on itself", "const"),
    Case("unpack_tensor_into_two_names", S("""
        model M(x: f32[N, 4]) {
            a, b = dense(x, 4)
            return a
        }
    """), 2, "cannot unpack a tensor f32[N, 4] into 2 names", "a, b"),
    Case("step_outside_train", S("""
        model M(x: f32[N, 4]) {
            step update {
                a = 1
            }
            return x
        }
    """), 2, "'step' is only allowed in a train section", "step"),
    Case("example_inside_block", S("""
        block B()(x) {
            example N = 3
            return x
        }
        model M(x: f32[N, 4]) {
            return B()(x)
        }
    """), 2, "'example' sizes belong in a model, not a block", "example"),
    Case("tuple_slice_with_float_bound", S("""
        model M(x: f32[N, 4]) {
            sizes = (8, 4, 2)
            for s in sizes[0.5:] {
                x = dense(x, s)
            }
            return x
        }
    """), 3, "slice bounds must be ints, got the float 0.5", "0.5"),
    Case("round_with_string_digits", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, round(2.5, "a"))
            return y
        }
    """), 2, "round: ndigits must be an int", "round"),
    Case("reciprocal_of_zero", S("""
        const SCALE = reciprocal(0)
        model M(x: f32[N, 4]) {
            return x * SCALE
        }
    """), 1, "reciprocal(0) is undefined", "reciprocal"),
    Case("int_of_infinity", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, int(1e400))
            return y
        }
    """), 2, "int: value must be a finite number, got inf", "int("),
    Case("scan_without_sequences", S("""
        block Cell()(x, s) {
            return x, s
        }
        model M(x: f32[N, 5, 4]) {
            ys, s = scan(Cell(), [], zeros(1, 4))
            return ys
        }
    """), 5, "scan: needs at least one sequence tensor", "scan"),
    Case("lstm_with_absurd_layer_count", S("""
        model M(x: f32[T, N, 4]) {
            y, state = lstm(x, 8, layers=99999999999999999999)
            return y
        }
    """), 2, "stacked layers is far too many", "lstm"),
    Case("expression_too_long", S("""
        model M(x: f32[N, 4]) {
            y = relu(x)
            z = """ + " + ".join(["y"] * 1200) + """
            return z
        }
    """), 3, "too long or nests too deeply", "z ="),
    # ------------------------------------------------------------- duplicates
    Case("duplicate_model_input", S("""
        model M(x: f32[N, 4], x: f32[N, 8]) {
            return dense(x, 2)
        }
    """), 1, "parameter 'x' of M is declared twice", "x: f32[N, 8]"),
    Case("duplicate_block_parameter", S("""
        block B(c: int, c: int)(x) {
            return dense(x, c)
        }
        model M(x: f32[N, 4]) {
            return B(2, 3)(x)
        }
    """), 1, "parameter 'c' of B is declared twice", "c: int)"),
    Case("duplicate_param_statement", S("""
        model M(x: f32[N, 4]) {
            param w: f32[4]
            param w: f32[4]
            return x * w
        }
    """), 3, "parameter name 'w' is used twice", "param"),
    Case("duplicate_layer_name", S("""
        model M(x: f32[N, 4]) {
            a = dense(x, 4, name="fc")
            b = dense(a, 4, name="fc")
            return b
        }
    """), 3, "the name 'fc' is already used in this block", "dense"),
    Case("model_defined_twice", S("""
        model M(x: f32[N, 4]) {
            return x
        }
        model M(x: f32[N, 4]) {
            return x
        }
    """), 4, "'M' is defined twice", "model"),
    # ------------------------------------------------------------------ train
    Case("unknown_optimizer", with_train("""
        loss = cross_entropy(output, label)
        optimizer = adamm(lr=1e-3)
    """), 6, "unknown optimizer 'adamm'", "adamm", hint="adam"),
    Case("unknown_optimizer_argument", with_train("""
        loss = cross_entropy(output, label)
        optimizer = adam(lrr=1e-3)
    """), 6, "adam has no argument 'lrr'", "lrr", hint="lr"),
    Case("negative_epochs", with_train("""
        loss = cross_entropy(output, label)
        epochs = -5
    """), 6, "epochs must be positive, got -5", "-5"),
    Case("fractional_epochs", with_train("""
        loss = cross_entropy(output, label)
        epochs = 2.5
    """), 6, "epochs must be an integer", "2.5"),
    Case("negative_learning_rate", with_train("""
        loss = cross_entropy(output, label)
        optimizer = sgd(lr=-0.1)
    """), 6, "lr must be positive, got -0.1", "-0.1"),
    Case("misspelt_output_in_loss", with_train("""
        loss = cross_entropy(outptu, label)
    """), 5, "unknown name 'outptu' in the train section", "outptu"),
    Case("train_setting_twice", with_train("""
        loss = cross_entropy(output, label)
        epochs = 3
        epochs = 4
    """), 7, "'epochs' is set twice", "epochs"),
    Case("train_without_loss", DENSE_MODEL + "train M on digits {\n}\n", 4,
         "the train section declares no loss", "train"),
    Case("train_unknown_model", DENSE_MODEL.replace("M(", "Net(") + S("""
        train M on digits {
            loss = cross_entropy(output, label)
        }
    """), 4, "train names an unknown model 'M'", "train", hint="Net"),
    Case("train_unknown_dataset", DENSE_MODEL + S("""
        train M on imagenet {
            loss = cross_entropy(output, label)
        }
    """), 4, "unknown data set 'imagenet'", "train"),
    # ---------------------------------------------------------------- imports
    Case("import_missing_file", S("""
        import "nonexistent.dln"
        model M(x: f32[N, 4]) {
            return x
        }
    """), 1, "cannot import nonexistent.dln: no such file", "import"),
    Case("circular_import", S("""
        import "a.dln"
        model M(x: f32[N, 4]) {
            return x
        }
    """), 1, "circular import of main.dln", "import", file="a.dln",
         files={"a.dln": 'import "main.dln"\nconst A = 1\n'}),
    Case("file_imports_itself", S("""
        const A = 1
        import "main.dln"
        model M(x: f32[N, 4]) {
            return x
        }
    """), 2, "circular import of main.dln", "import"),
    Case("import_a_directory", S("""
        import "sub"
        model M(x: f32[N, 4]) {
            return x
        }
    """), 1, "cannot import sub: not a file", "import", files={"sub/x.dln": "const A = 1\n"}),
    Case("syntax_error_in_imported_file", S("""
        import "lib.dln"
        model M(x: f32[N, 4]) {
            return x
        }
    """), 2, "unexpected ')'", ") *", file="lib.dln",
         files={"lib.dln": "const A = 1\nconst B = (A + 2)) * 3\n"}),
    Case("imported_module_lacks_name", S("""
        import "lib.dln" as lib
        model M(x: f32[N, 4]) {
            return dense(x, lib.WIDTH)
        }
    """), 3, "defines no 'WIDTH'", "lib.WIDTH", files={"lib.dln": "const Width = 8\n"}, hint="Width"),
]

IDS = [c.id for c in CASES]
assert len(IDS) == len(set(IDS)), "case ids must be distinct"
assert len({c.spec for c in CASES}) == len(CASES), "case specs must be distinct"

_HEAD = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.*)$")


def _write(tmp_path: Path, case: Case) -> Path:
    main = tmp_path / "main.dln"
    main.write_text(case.spec, encoding="utf-8")
    for name, text in case.files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return main


def _expected_col(case: Case) -> int | None:
    if case.anchor is None:
        return None
    text = case.spec if case.file == "main.dln" else case.files[case.file]
    line = text.splitlines()[case.line - 1]
    assert case.anchor in line, f"test bug: {case.anchor!r} is not on line {case.line}: {line!r}"
    return line.index(case.anchor) + 1


def check_report(case: Case, tmp_path: Path, out: str, exit_code: int) -> None:
    assert exit_code != 0, f"{case.id}: dlc check accepted the spec\n{out}"
    assert exit_code == 1, f"{case.id}: exit code {exit_code} (3 is the internal-error path)\n{out}"
    assert "Traceback" not in out and "internal error" not in out, out
    lines = out.rstrip("\n").splitlines()
    m = _HEAD.match(lines[0])
    assert m, f"{case.id}: first line is not file:line:col: error: ...\n{out}"
    assert Path(m["file"]).resolve() == (tmp_path / case.file).resolve(), out
    assert int(m["line"]) == case.line, f"{case.id}: expected line {case.line}\n{out}"
    col = _expected_col(case)
    if col is not None:
        assert int(m["col"]) == col, f"{case.id}: expected column {col}\n{out}"
    assert case.message in m["msg"], f"{case.id}: expected {case.message!r}\n{out}"
    # the source line, then a caret under the reported column
    text = (tmp_path / case.file).read_text(encoding="utf-8")
    src = text.splitlines()[case.line - 1].expandtabs(4)
    assert lines[1] == f" {case.line} | {src}", out
    caret = re.fullmatch(r" +\| ( *)\^~*", lines[2])
    assert caret, f"{case.id}: no caret line\n{out}"
    assert len(caret[1]) == int(m["col"]) - 1, out
    hints = [ln for ln in lines[3:] if ln.startswith("hint: ")]
    assert hints and len(hints[0]) > len("hint: "), f"{case.id}: no hint\n{out}"
    if case.hint is not None:
        assert case.hint in hints[0], f"{case.id}: expected {case.hint!r} in the hint\n{out}"


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:  # click < 8.2 mixes stderr into output
        return result.output


def test_cli_main_is_the_click_group():
    assert isinstance(cli_main, click.Group)
    assert "check" in cli_main.commands


def test_there_are_enough_distinct_cases():
    assert len(CASES) >= 45


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_in_process(case: Case, tmp_path: Path):
    path = _write(tmp_path, case)
    clear_cache()
    result = CliRunner().invoke(cli_main, ["check", str(path)])
    out = _stderr(result)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{case.id}: dlc check raised {result.exception!r}") from result.exception
    check_report(case, tmp_path, out, result.exit_code)


SUBPROCESS_CASES = ["missing_closing_brace", "unknown_op_in_chain", "add_shape_mismatch",
                    "circular_import", "negative_epochs", "dense_of_terabytes"]


def _dlc_command() -> list[str]:
    exe = shutil.which("dlc")
    return [exe] if exe else [sys.executable, "-m", "dlc.cli"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SUBPROCESS_CASES], ids=lambda c: c.id)
def test_bad_input_subprocess(case: Case, tmp_path: Path):
    path = _write(tmp_path, case)
    proc = subprocess.run(_dlc_command() + ["check", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.stdout == "", proc.stdout
    check_report(case, tmp_path, proc.stderr, proc.returncode)


# `dlc info` needs concrete sizes: an unsized dimension is a located error, not a KeyError.
INFO_CASES = [
    Case("info_without_example_size", S("""
        model M(x: f32[N, 4]) {
            y = dense(x, 2)
            return y
        }
    """), 2, "cannot count operations: the size of N is unknown", "dense", hint="example N"),
    Case("info_parameter_sized_by_unbound_dimension", S("""
        model M(x: f32[N, L, 8]) {
            example N = 1
            param pos: f32[1, L, 8] = normal(std=0.02)
            return x + pos
        }
    """), 3, "parameter pos has the shape f32[1, L, 8]", "param", hint="--bind L="),
]


@pytest.mark.parametrize("case", INFO_CASES, ids=lambda c: c.id)
def test_info_with_unsized_dimensions(case: Case, tmp_path: Path):
    path = _write(tmp_path, case)
    clear_cache()
    result = CliRunner().invoke(cli_main, ["info", str(path)])
    check_report(case, tmp_path, _stderr(result), result.exit_code)


def test_integer_literals_with_leading_zeros_are_decimal(tmp_path: Path):
    path = tmp_path / "zeros.dln"
    path.write_text("const W = 008\nmodel M(x: f32[N, 4]) {\n    return dense(x, W)\n}\n", encoding="utf-8")
    clear_cache()
    result = CliRunner().invoke(cli_main, ["info", str(path), "--bind", "N=2", "--json"])
    assert result.exit_code == 0, result.output
    assert '"f32[2, 8]"' in result.output
