"""CUDA-graph replay of the v* step (a speed-up of the v* optimisation, docs/editing.md "v*"; same loss).

On a GPU one v* step of a large model is thousands of small kernels (forward and backward of every block above
the edited layer), and the time goes to launching them from Python, not to running them (docs/benchmarks.md).
Once the batch of a v* optimisation is fixed, every step runs the same kernels on the same buffers; only the
values of delta change, and delta is updated in place. `StepGraph` records one step (forward, loss, backward
into `delta.grad`) as a CUDA graph and then replays it: one launch per step, no Python in the model's forward.

The recorded function must not wait on the GPU (no `.item()`, `.nonzero()`, boolean-mask indexing; see
editing.value_loss) and must read its inputs from tensors that stay in place. What the graphs keep between the
optimisations of one model lives in that model's `GraphState` (`graph_state(model)`; no module-level state): the
side stream the steps run on, whether it is warm, the last graph (the next capture shares its memory pool) and
whether a capture of this model failed. The first capture happens after one eager step has run on the stream
(libraries initialise lazily on first use, which a capture must not record; `mark_warm`); later optimisations of
the model (`warm`) capture before any eager step and replay every step. `graphs_wanted` decides where graphs are
used ("auto": a model wholly on one CUDA device); a capture that fails (a model whose forward synchronises)
leaves this and later optimisations of the model in eager mode. `without_cudnn_attention` keeps the v* steps off
cuDNN's attention kernels, which are planned anew for every shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)
STATE_ATTR = "_goldenlayers_graph_state"  # where a model keeps its GraphState (an instance attribute)


class GraphState:
    """What CUDA-graph replay keeps between the v* optimisations of one model: `stream`, the side stream the
    steps run on (reused because CUDA libraries keep a workspace per stream and the caching allocator caches
    freed memory per stream: a new stream per optimisation would grow both); `warm`, True once an eager step
    (forward and backward) has run on it; `last`, the last graph captured (the next one shares its memory pool:
    it is never replayed again); `failed`, True once a capture of this model's step failed (not tried again).
    Copying or pickling the model gives the copy a new, empty state (streams and graphs are not copyable)."""

    def __init__(self) -> None:
        self.stream: torch.cuda.Stream | None = None
        self.warm = False
        self.last: StepGraph | None = None
        self.failed = False

    def __deepcopy__(self, memo) -> GraphState:
        return GraphState()

    def __reduce__(self):
        return GraphState, ()

    @contextmanager
    def side_stream(self, device: torch.device) -> Iterator[torch.cuda.Stream]:
        """Run the block on the side stream, ordered after the device's current stream (and that one after it on
        exit)."""
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        outer = torch.cuda.current_stream(device)
        if self.stream is None or self.stream.device != device:
            self.stream, self.warm, self.last = torch.cuda.Stream(device), False, None
        s = self.stream
        s.wait_stream(outer)
        try:
            with torch.cuda.stream(s):
                yield s
        finally:
            outer.wait_stream(s)

    def mark_warm(self) -> None:
        self.warm = True

    def capture(self, fn: Callable[[], torch.Tensor], what: str, model) -> StepGraph | None:
        """A StepGraph of `fn` on the side stream, or None when the capture fails (logged; the memory the capture
        took is released). A model whose step cannot be captured (e.g. its forward synchronises) is not tried
        again (`failed`); running out of memory only skips this capture."""
        try:
            graph = StepGraph(fn, self.stream, self.last)
        except RuntimeError as e:
            oom = isinstance(e, torch.cuda.OutOfMemoryError)
            log.warning("could not capture %s of %s as a CUDA graph (%s); %s", what, type(model).__name__,
                        str(e).splitlines()[0][:200],
                        "this batch runs without one" if oom else "it runs without graphs")
            self.failed = self.failed or not oom
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            return None
        self.last = graph
        return graph


def graph_state(model) -> GraphState:
    """The model's GraphState, made on first use (kept as an instance attribute, so it lives as long as the
    model)."""
    state = model.__dict__.get(STATE_ATTR)
    if state is None:
        state = GraphState()
        object.__setattr__(model, STATE_ATTR, state)  # a plain attribute: not a parameter, buffer or submodule
    return state


def graphs_wanted(setting: bool | str, model, n_steps: int) -> bool:
    """`ExecOptions.cuda_graphs` resolved for `model`: "auto" uses a graph when every parameter lies on one CUDA
    device and there are at least 4 steps to replay (capture costs about one eager step); True asks for it
    wherever CUDA is available (False off). Never for a model whose step could not be captured before."""
    state = model.__dict__.get(STATE_ATTR)
    if state is not None and state.failed:
        return False
    devices = {p.device for p in model.parameters()}
    on_one_gpu = len(devices) == 1 and next(iter(devices)).type == "cuda"
    if setting == "auto":
        return on_one_gpu and n_steps >= 4
    return bool(setting) and on_one_gpu


@contextmanager
def without_cudnn_attention(enabled: bool) -> Iterator[None]:
    """Inside, scaled-dot-product attention may use every backend but cuDNN's (when `enabled`). cuDNN's attention
    is planned per shape, and every v* optimisation has its own shapes: on LLaMA-2-7B (bf16, H100) it made an edit
    3-4x slower (4.54 s against 0.90 s with the flash / memory-efficient kernels, docs/benchmarks.md)."""
    if not enabled:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


class StepGraph:
    """`fn()` captured once on `stream` (which must have run it, or the same kinds of work, eagerly before),
    sharing the memory pool of `after` (a graph that is not replayed again); `replay()` runs it again and
    returns the same output tensor, refilled."""

    def __init__(self, fn: Callable[[], torch.Tensor], stream: torch.cuda.Stream, after: StepGraph | None = None):
        self.graph = torch.cuda.CUDAGraph()
        self.fn = fn  # keeps alive the tensors fn reads (made before the capture): replays read their memory
        with torch.cuda.stream(stream):
            self.graph.capture_begin(pool=None if after is None else after.graph.pool())
            try:
                self.out = fn()
            except BaseException:
                try:
                    self.graph.capture_end()
                except RuntimeError:
                    pass  # the capture is invalid anyway; the first error is the one to report
                raise
            self.graph.capture_end()

    def retire(self) -> None:
        """Done with replays: drop the captured function and the output; the graph stays (until the next capture
        of this model) only so that the next one can reuse its memory pool."""
        self.fn = self.out = None

    def replay(self) -> torch.Tensor:
        self.graph.replay()
        return self.out
