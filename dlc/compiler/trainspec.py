"""What a `train` section declares, as the compiler takes it: typed data and
IR, no syntax.  The frontend fills these (`frontend.train.train_settings`);
`compiler.training` builds the training programs from them.

The loss is IR: a graph per mode whose inputs are the model's outputs
(``out:<name>``), the model's inputs (by name) and, when the loss uses one,
``label``; its one output is the scalar loss.  `compiler.training.build_loss`
applies it to a model graph; a framework backend may instead evaluate it
after its own forward pass.

    spec = train_settings(module, tdef, bind)        # frontend
    step = build_train_step(model_graph, spec)       # compiler
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span
from .ir import Graph
from .types import TensorType

MODES = ("train", "eval")


@dataclass
class LossSpec:
    """The train section's loss as IR, once per mode (dropout and batch norm
    in a loss follow the mode as they do in the model)."""

    train: Graph
    eval: Graph

    def graph(self, mode: str) -> Graph:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return self.train if mode == "train" else self.eval

    @property
    def label(self) -> TensorType | None:
        """The type of `label` (None when the loss uses none): class indices
        when it feeds a class-index loss, otherwise the first output's type."""
        return next((v.type for v in self.train.inputs if v.name == "label"), None)

    @property
    def output_names(self) -> list[str]:
        """The model outputs the loss reads, in the model's order."""
        return [v.name[4:] for v in self.train.inputs if v.name.startswith("out:")]


@dataclass
class StepSpec:
    """One `step name { loss = ...; optimizer = ...; params = [Model] }` of a
    section with alternating updates (a GAN).

    `graph` computes the step's loss (its one output) from the main model's
    inputs, with every model the step calls applied by name and sharing one
    set of weights (`<Model>.<param>`) across calls and steps; `params` names
    the models (parameter-name prefixes) this step updates."""

    name: str
    graph: Graph
    optimizer: str
    optimizer_args: dict
    params: list[str]
    span: Span | None = None


@dataclass
class ParamGroup:
    """One `{match = "features.*", lr = 1e-4, ...}` of `param_groups`: the
    parameters whose names match `match` (fnmatch) take `args` over the
    optimizer's own arguments, as a torch.optim param group does."""

    match: str
    args: dict
    span: Span | None = None


@dataclass
class TrainSpec:
    """A `train` section (command-line flags may override the numbers).

    Loss: `loss`, plus the `l1`/`l2` penalties on weights.  Optimizer:
    `optimizer` with `optimizer_args` (torch's names and defaults,
    `compiler.optim`), gradient clipping.  Schedule: `schedule` with
    `schedule_args` (`compiler.schedules`).  Data: `dataset`, `batch`,
    `shuffle`, `drop_last` (skip a short last batch), `augment` ((name,
    args) pairs, `runtime.data.augment`).
    Run: `epochs`, `seed`, `early_stopping` (a patience in epochs),
    `metrics`.  A section of alternating `steps` has no `loss`."""

    model: str = ""
    loss: LossSpec | None = None
    optimizer: str = "adam"
    optimizer_args: dict = field(default_factory=dict)
    schedule: str = "constant"
    schedule_args: dict = field(default_factory=dict)
    epochs: int = 10
    batch: int = 32
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False                # skip a short last batch, as torch's DataLoader(drop_last=True)
    l1: float = 0.0
    l2: float = 0.0
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    early_stopping: int | None = None
    dataset: str | None = None
    augment: list[tuple[str, dict]] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    steps: list[StepSpec] = field(default_factory=list)
    span: Span | None = None
    # transfer learning (`compiler.param_select` resolves the patterns against a model)
    weights: str | None = None             # initial weights (a path; relative ones resolved against the spec)
    freeze: list[str] = field(default_factory=list)      # fnmatch patterns of parameters kept fixed
    freeze_bn: bool = False                # batch norms whose parameters are all frozen run in eval mode
    param_groups: list[ParamGroup] = field(default_factory=list)
    frozen: set[str] = field(default_factory=set)        # resolved names (filled by `param_select.resolve`)
    group_of: dict[str, int] = field(default_factory=dict)  # param name -> group index (1-based; absent: 0)

    def is_frozen(self, name: str) -> bool:
        return name in self.frozen

    def optimizer_args_for(self, name: str) -> dict:
        """The optimizer arguments of parameter `name`: its group's over the defaults."""
        k = self.group_of.get(name, 0)
        return {**self.optimizer_args, **self.param_groups[k - 1].args} if k else dict(self.optimizer_args)


__all__ = ["LossSpec", "ParamGroup", "StepSpec", "TrainSpec"]
