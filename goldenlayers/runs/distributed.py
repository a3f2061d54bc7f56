"""Several processes / GPUs for one run (the brute-force sweep of paper section 4 is the cost to spread):

    torchrun --nproc-per-node N -m goldenlayers run CONFIG

Every process (rank) loads the models on `cuda:LOCAL_RANK` (CPU without CUDA; gloo on CPU, nccl on GPU). Per job:
- `select` runs on rank 0 only (one LGA / CMA run on the proxy split is cheap) and writes the main store; the
  other ranks read the chosen layer back from it after the job's synchronisation point;
- `bruteforce` / `evaluate`: rank 0 merges any shard left from before, a barrier, then every rank does every
  world-th remaining (case, layer) cell and writes it to its own `shards/shard-<rank>.sqlite` (one SQLite writer per
  file), all ranks report, and rank 0 merges the shards into `store.sqlite` and marks the job done (or failed with
  every failing rank's error).
A killed worker loses only its in-flight cells: the cells it wrote are in its shard, merged at the next start.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from goldenlayers.runs.plan import Engine, ExecuteSummary, Job, plan
from goldenlayers.runs.rundir import RunDir
from goldenlayers.runs.timeline import Timeline


def world_size() -> int:
    """WORLD_SIZE of a torchrun launch (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init() -> tuple[int, int, str]:
    """Join the process group of a torchrun launch; returns (rank, world, device of this rank)."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        backend, device = "nccl", f"cuda:{local}"
    else:
        backend, device = "gloo", "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(hours=12))  # a select job on rank 0 may take long
    return dist.get_rank(), dist.get_world_size(), device


def broadcast(value, src: int = 0):
    """`value` of rank `src` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(value) -> list:
    """Every rank's `value`, in rank order, on every rank (also a synchronisation point)."""
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


class WorkerAbort(RuntimeError):
    """Raised on ranks > 0 when rank 0 could not create the run directory (rank 0 raises the real error)."""


def open_run(make_run) -> RunDir:
    """Rank 0 creates or resumes the run directory with `make_run()` (its error is raised there, and a WorkerAbort
    on the other ranks, so no rank waits for it); the other ranks then open it (no session recorded: they never
    write the main store)."""
    run, err = None, None
    if dist.get_rank() == 0:
        try:
            run = make_run()
        except Exception as e:
            err = e
    path, reason = broadcast((str(run.path) if run else None, None if err is None else _reason(err)))
    if err is not None:
        raise err
    if reason is not None:
        raise WorkerAbort(f"rank 0 could not open the run: {reason}")
    return run if run is not None else RunDir.open(path)


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def execute_distributed(run: RunDir, engine: Engine, jobs: list[Job] | None = None,
                        retry_failed: bool = True) -> ExecuteSummary:
    """`goldenlayers.runs.plan.execute` over the ranks of the process group (see the module docstring). The job
    list and what is skipped are decided by rank 0; returns the same summary on every rank."""
    rank = dist.get_rank()
    tl = getattr(engine, "timeline", None) or Timeline()
    summary = ExecuteSummary()
    todo = None
    if rank == 0:
        status, todo = run.store.jobs(), []
        for job in plan(run.config) if jobs is None else jobs:
            prev = status.get(job.key, {}).get("status")
            if prev == "done" or (prev == "failed" and not retry_failed):
                summary.skipped.append(job.key)
            else:
                todo.append(job)
    todo, summary.skipped = broadcast((todo, summary.skipped))
    for job in todo:
        err = None
        if job.kind != "select" and rank == 0:
            with tl.phase("merge shards"):
                run.merge_shards()  # cells of an earlier, interrupted session
        if job.kind != "select":
            with tl.phase("wait for others"):
                dist.barrier()
        if job.kind != "select" or rank == 0:
            try:
                engine.run_job(job, run)
            except Exception as e:
                err = _reason(e)
        with tl.phase("wait for others"):
            errors = [f"rank {i}: {e}" for i, e in enumerate(gather(err)) if e is not None]
        if rank == 0:
            if job.kind != "select":
                with tl.phase("merge shards"):
                    run.merge_shards()
            run.store.mark_job(job.key, "failed" if errors else "done", "; ".join(errors))
        if errors:
            summary.failed[job.key] = "; ".join(errors)
        else:
            summary.done.append(job.key)
    with tl.phase("wait for others"):
        dist.barrier()
    return summary


def finish() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
