"""CUDA-graph replay of the v* step (a speed-up of the v* optimisation, REFERENCE.md section 3 "v*"; same loss).

On a GPU one v* step of a large model is thousands of small kernels (forward and backward of every block above
the edited layer), and the time goes to launching them from Python, not to running them (docs/benchmarks.md).
Once the batch of a v* optimisation is fixed, every step runs the same kernels on the same buffers; only the
values of delta change, and delta is updated in place. `StepGraph` records one step (forward, loss, backward
into `delta.grad`) as a CUDA graph and then replays it: one launch per step, no Python in the model's forward.

The recorded function must not wait on the GPU (no `.item()`, `.nonzero()`, boolean-mask indexing; see
editing.value_loss) and must read its inputs from tensors that stay in place. The first capture on a device
happens on a side stream after one eager step has run on it (libraries initialise lazily on first use, which a
capture must not record; `mark_warm`); later optimisations on that stream (`stream_warm`) capture before any
eager step and replay every step. The stream and the graphs' memory pool are kept per device and reused.
`graphs_wanted` decides where graphs are used ("auto": a model wholly on one CUDA device); a capture that fails
(a model whose forward synchronises) leaves the optimisation in eager mode. `without_cudnn_attention` keeps the
v* steps off cuDNN's attention kernels, which are planned anew for every shape.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)
_failed: weakref.WeakSet = weakref.WeakSet()  # models whose v* step could not be captured: not tried again


def graphs_wanted(setting: bool | str, model, n_steps: int) -> bool:
    """`EditHParams.cuda_graphs` resolved for `model`: "auto" uses a graph when every parameter lies on one CUDA
    device and there are at least 4 steps to replay (capture costs about one eager step); True asks for it
    wherever CUDA is available (False off)."""
    if model in _failed:
        return False
    devices = {p.device for p in model.parameters()}
    on_one_gpu = len(devices) == 1 and next(iter(devices)).type == "cuda"
    if setting == "auto":
        return on_one_gpu and n_steps >= 4
    return bool(setting) and on_one_gpu


_streams: dict[torch.device, torch.cuda.Stream] = {}  # one side stream per device, reused by every optimisation
_last: dict[torch.device, StepGraph] = {}  # per device, the last graph captured: the next one shares its memory


@contextmanager
def side_stream(enabled: bool, device: torch.device) -> Iterator[torch.cuda.Stream | None]:
    """Run the block on this device's side stream, ordered after the current stream (and the current one after
    it on exit); yields None (and does nothing) when not enabled. The stream is reused because CUDA libraries
    keep a workspace per stream and the caching allocator caches freed memory per stream: a new stream per
    optimisation would grow both."""
    if not enabled:
        yield None
        return
    device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    outer = torch.cuda.current_stream(device)
    s = _streams.get(device)
    if s is None:
        s = _streams[device] = torch.cuda.Stream(device)
    s.wait_stream(outer)
    try:
        with torch.cuda.stream(s):
            yield s
    finally:
        outer.wait_stream(s)


_warm: set[torch.device] = set()  # devices whose side stream has run an eager v* step (forward and backward)


def stream_warm(stream: torch.cuda.Stream | None) -> bool:
    """True when the side stream `stream` has run an eager v* step: a step may then be captured before any
    eager one."""
    return stream is not None and stream.device in _warm


def mark_warm(stream: torch.cuda.Stream) -> None:
    _warm.add(stream.device)


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
    """`fn()` captured once on `stream` (which must have run it, or the same kinds of work, eagerly before);
    `replay()` runs it again and returns the same output tensor, refilled."""

    def __init__(self, fn: Callable[[], torch.Tensor], stream: torch.cuda.Stream):
        self.graph = torch.cuda.CUDAGraph()
        self.fn = fn  # keeps alive the tensors fn reads (made before the capture): replays read their memory
        last = _last.get(stream.device)  # its memory pool is reused: it is never replayed again
        with torch.cuda.stream(stream):
            self.graph.capture_begin(pool=None if last is None else last.graph.pool())
            try:
                self.out = fn()
            except BaseException:
                try:
                    self.graph.capture_end()
                except RuntimeError:
                    pass  # the capture is invalid anyway; the first error is the one to report
                raise
            self.graph.capture_end()
        _last[stream.device] = self

    def retire(self) -> None:
        """Done with replays: drop the captured function and the output; the graph stays (until the next capture
        on this device) only so that the next one can reuse its memory pool."""
        self.fn = self.out = None

    def replay(self) -> torch.Tensor:
        self.graph.replay()
        return self.out


def try_capture(fn: Callable[[], torch.Tensor], stream: torch.cuda.Stream, what: str, model) -> StepGraph | None:
    """A StepGraph of `fn`, or None when the capture fails (logged; the memory the capture took is released).
    A model whose step cannot be captured (e.g. its forward synchronises) is not tried again (graphs_wanted says
    False); running out of memory only skips this capture."""
    try:
        return StepGraph(fn, stream)
    except RuntimeError as e:
        oom = isinstance(e, torch.cuda.OutOfMemoryError)
        log.warning("could not capture %s of %s as a CUDA graph (%s); %s", what, type(model).__name__,
                    str(e).splitlines()[0][:200], "this batch runs without one" if oom else "it runs without graphs")
        if not oom:
            _failed.add(model)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return None
