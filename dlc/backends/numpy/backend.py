"""The NumPy reference interpreter behind the backend protocol."""
from __future__ import annotations

from ..protocol import Backend, input_dims
from .interpreter import Interpreter


class InterpretedGraph:
    """A graph run by the interpreter.  The sizes of symbolic input dimensions
    (whatever their names: N, B, T) are read off each call's inputs; one
    interpreter per set of sizes keeps its attribute caches across calls."""

    def __init__(self, graph, bind: dict | None = None):
        self.graph = graph
        self.bind = {k: int(v) for k, v in (bind or {}).items() if float(v).is_integer()}
        self._by_dims: dict[tuple, Interpreter] = {}

    def run(self, inputs: dict, weights: dict, seed: int = 0):
        dims = {**input_dims(self.graph, inputs), **self.bind}
        key = tuple(sorted(dims.items()))
        interp = self._by_dims.get(key)
        if interp is None:
            interp = self._by_dims[key] = Interpreter(self.graph, dims=dims)
        interp.seed = seed
        return interp.run(inputs, weights)


class NumpyBackend(Backend):
    name = "numpy"
    summary = "the reference interpreter (always available)"

    def compile(self, graph, *, target: str = "cpu", bind: dict | None = None) -> InterpretedGraph:
        if target not in ("cpu", None):
            from ...errors import DlcError
            raise DlcError(f"the numpy backend runs on this CPU, not on '{target}'", hint="drop --target")
        return InterpretedGraph(graph, bind)


BACKEND = NumpyBackend()
