"""The trainer contract: what an `entrypoint` module defines for tfdist's runtime to run it.

A trainer module defines plain functions; each receives a `RunContext`::

    def build_model(ctx) -> keras.Model
    def loss_fn(labels, outputs) -> tf.Tensor                      # per-example losses
    def train_input_fn(ctx, input_context) -> tf.data.Dataset      # repeated, per-replica batches
    def eval_input_fn(ctx) -> tf.data.Dataset
    def build_optimizer(ctx) -> keras.optimizers.Optimizer         # optional, default Adam(1e-3)
    def eval_metrics(ctx) -> dict[str, keras.metrics.Metric]       # optional; `loss` is built in

The runtime owns everything else: the strategy, the step counter, checkpoints, the evaluator
loop and the stop condition (`max_steps`), as `tf.estimator.train_and_evaluate` did.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

REQUIRED = ("build_model", "loss_fn", "train_input_fn", "eval_input_fn")
OPTIONAL = ("build_optimizer", "eval_metrics")


class ContractError(ValueError):
    """An entrypoint module that does not follow the trainer contract."""


@dataclass(frozen=True)
class RunContext:
    """What a trainer function may need to know about the running job."""

    model_dir: str
    data_dir: str | None
    task_type: str
    task_index: int
    num_workers: int  # processes that train (chief + workers)


@dataclass(frozen=True)
class Trainer:
    """The functions of one entrypoint module."""

    module: ModuleType

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def has(self, name: str) -> bool:
        return callable(getattr(self.module, name, None))


def load_trainer(entrypoint: str) -> Trainer:
    """Import the entrypoint module and check it defines the required functions."""
    try:
        module = importlib.import_module(entrypoint)
    except ModuleNotFoundError as error:
        if error.name and entrypoint.startswith(error.name):
            raise ContractError(
                f"trainer.entrypoint: no module named {entrypoint!r}; check the spelling and "
                "that its package is installed in the trainer environment"
            ) from error
        raise
    missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise ContractError(
            f"trainer.entrypoint: module {entrypoint!r} does not define {', '.join(missing)}; "
            "see tfdist.runtime.contract for the functions a trainer module provides"
        )
    return Trainer(module)


def undefined_in_source(source: str) -> list[str]:
    """The required functions a trainer module's source does not define at its top level,
    read without importing it; none when the module may define names dynamically (a
    `from ... import *` or a module `__getattr__`)."""
    import ast

    bound: set[str] = set()
    for node in ast.parse(source).body:
        match node:
            case (
                ast.FunctionDef(name=name)
                | ast.AsyncFunctionDef(name=name)
                | ast.ClassDef(name=name)
            ):
                bound.add(name)
            case ast.Import(names=names) | ast.ImportFrom(names=names):
                if any(alias.name == "*" for alias in names):
                    return []
                bound.update((alias.asname or alias.name).split(".")[0] for alias in names)
            case ast.Assign(targets=targets):
                bound.update(t.id for t in targets if isinstance(t, ast.Name))
            case ast.AnnAssign(target=ast.Name(id=name)) | ast.AugAssign(target=ast.Name(id=name)):
                bound.add(name)
    if "__getattr__" in bound:
        return []
    return [name for name in REQUIRED if name not in bound]
