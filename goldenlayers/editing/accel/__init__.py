"""How the v* optimisation runs, apart from what it computes (docs/editing.md "Speed"): step runners (eager,
suffix layout, CUDA graphs) over the method's plain loop in editing.values, with the replay of the blocks below
the site (`replay`), the suffix layout (`suffix`), CUDA-graph capture (`graphs`), faster kernels (`kernels`)
and the execution options that choose between them (`options`). Nothing here changes a result beyond float
rounding; nothing here keeps module-level state (a model keeps its CUDA-graph state, `graphs.GraphState`).
"""

from goldenlayers.editing.accel.options import ENV, ExecOptions, ExecPlan, default_options
from goldenlayers.editing.accel.runner import EagerSteps, Forwards, GraphSteps, step_runner

__all__ = ["ENV", "EagerSteps", "ExecOptions", "ExecPlan", "Forwards", "GraphSteps", "default_options",
           "step_runner"]
