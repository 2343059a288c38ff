"""Every limit the frontend enforces, in one place.

A spec is untrusted text: whatever it says, `dlc check` must finish quickly,
in bounded memory, with either success or a located `DlcError`.  Each limit
below is far above what a real model needs, and each is reported by a
`DlcLimitError` that names it (docs/security.md lists them all).
"""
from __future__ import annotations

# source text
MAX_SOURCE_BYTES = 1 << 20        # one .dln file: 1 MiB (the whole zoo's largest is ~10 KB)
MAX_NESTING = 100                 # brackets or prefix operators nested in one expression
MAX_IMPORT_PATH = 1024            # characters in an import path

# compile-time values
MAX_INT_LITERAL = 1 << 128        # an integer literal (bounds big-int work and float conversion)
MAX_INT = 1 << 62                 # integer arithmetic results (+, -, *, **): sizes and counts
MAX_ITERATIONS = 100_000          # one compile-time loop, range or sequence
# total elaboration work of one model: statements run, loop iterations and
# sequence elements built, summed over every loop and block (nested loops
# multiply, so each loop being short is not enough).  A call of a function or
# block costs CALL_STEPS and an operation OP_STEPS, in proportion to the time
# they take (binding the arguments; inferring the shape).  The limit is a few
# seconds of CPU; the largest model of the zoo takes 5% of it.
MAX_STEPS = 500_000
CALL_STEPS = 10
OP_STEPS = 50

# symbolic sizes: floor divisions nested in one dimension (a stride-2 layer on a
# symbolic size adds one; ResNet-50 has 5)
MAX_DIM_DEPTH = 32

# the graph
MAX_TENSOR_BYTES = 1 << 40        # one tensor: 1 TiB
MAX_NODES = 2_000_000             # operations in one graph
MAX_DEPTH = 48                    # blocks nested in blocks
MAX_PARAMS = 100_000              # parameter tensors (not elements)
