"""Execution options of the v* optimisation: how its steps run, never what they compute (docs/editing.md "Speed").

They are not method settings (a preset, a YAML config or `--set` cannot hold them): every choice gives the same
v* up to float rounding. `ExecOptions()` is "auto" everywhere, and `plan(model, n_steps)` resolves it for the
model's device and dtype. The environment variable GOLDENLAYERS_ACCEL overrides it for any command, e.g.

    GOLDENLAYERS_ACCEL="suffix=off,graphs=off,kernels=off" goldenlayers run ...

with suffix and graphs each auto / on / off and kernels on / off (unnamed options stay auto / on). The method
settings `suffix_replay` and `cuda_graphs` of earlier versions are refused with a note pointing here
(`MOVED_SETTINGS`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from goldenlayers.editing.accel.graphs import graphs_wanted
from goldenlayers.editing.accel.suffix import suffix_wanted

ENV = "GOLDENLAYERS_ACCEL"
Switch = bool | Literal["auto"]
_WORDS = MappingProxyType({"auto": "auto", "on": True, "off": False, "true": True, "false": False, "1": True,
                           "0": False})
_NAMES = MappingProxyType({"suffix": "suffix_replay", "graphs": "cuda_graphs", "kernels": "kernels"})
# method settings of earlier versions that are execution options now: setting -> its name in GOLDENLAYERS_ACCEL
MOVED_SETTINGS = MappingProxyType({"suffix_replay": "suffix", "cuda_graphs": "graphs"})


def moved_setting_error(key: str) -> str:
    """The message for a method setting that became an execution option."""
    return (f"{key} is no longer a method setting (it never changed results): choose it with the environment "
            f"variable {ENV}, e.g. {ENV}={MOVED_SETTINGS[key]}=off")


@dataclass(frozen=True)
class ExecPlan:
    """ExecOptions resolved for one model and optimisation: suffix replay (editing.accel.suffix), CUDA graphs
    (editing.accel.graphs) and the kernel swaps (editing.accel.kernels)."""

    suffix: bool
    graphs: bool
    kernels: bool


@dataclass(frozen=True)
class ExecOptions:
    """suffix_replay: after the first v* forward, compute only the positions from the fact token to the last one
    the loss reads, the keys and values before it cached (editing.accel.suffix; same loss, other rounding).
    "auto": on a CPU, on a GPU when CUDA graphs replay the steps, and for full-float32 models without graphs,
    where it is faster; True / False force it (False runs the whole rows at every step, as the reference code
    does). cuda_graphs: replay the v* steps as one CUDA graph (editing.accel.graphs; one launch per step instead
    of thousands). "auto": whenever the model lies wholly on one CUDA device and there are at least 4 steps;
    True / False force it (True still needs a model on one CUDA device). kernels: the kernel swaps of
    editing.accel.kernels (same function, faster kernels)."""

    suffix_replay: Switch = "auto"
    cuda_graphs: Switch = "auto"
    kernels: bool = True

    def __post_init__(self) -> None:
        for name in ("suffix_replay", "cuda_graphs"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"{name} must be True, False or 'auto', got {getattr(self, name)!r}")
        if self.kernels not in (True, False):
            raise ValueError(f"kernels must be True or False, got {self.kernels!r}")

    @classmethod
    def from_env(cls, environ: dict | None = None) -> ExecOptions:
        """The options GOLDENLAYERS_ACCEL asks for (the defaults where it is unset or empty); a ValueError naming
        the variable for anything else than name=value items with the names and values above."""
        text = (os.environ if environ is None else environ).get(ENV, "").strip()
        chosen: dict[str, Switch] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, word = (s.strip().lower() for s in item.partition("="))
            value = _WORDS.get(word)
            if name not in _NAMES or value is None or (name == "kernels" and value == "auto"):
                raise ValueError(f"{ENV}: cannot read {item!r}; expected comma-separated suffix=auto|on|off, "
                                 f"graphs=auto|on|off, kernels=on|off")
            chosen[_NAMES[name]] = value
        return cls(**chosen)

    def plan(self, model, n_steps: int) -> ExecPlan:
        """These options resolved for `model` (its device and dtype) and an optimisation of `n_steps` forwards."""
        graphs = graphs_wanted(self.cuda_graphs, model, n_steps)
        suffix = suffix_wanted(self.suffix_replay, model, graphs) and n_steps > 1
        return ExecPlan(suffix=suffix, graphs=graphs, kernels=self.kernels)


def default_options() -> ExecOptions:
    """ExecOptions.from_env(): "auto" unless GOLDENLAYERS_ACCEL says otherwise."""
    return ExecOptions.from_env()


__all__ = ["ENV", "MOVED_SETTINGS", "ExecOptions", "ExecPlan", "default_options", "moved_setting_error"]
