"""`goldenlayers run`, `goldenlayers report`, `goldenlayers export`: thin shells over goldenlayers.runs and
goldenlayers.report (docs/runs.md, docs/report.md).

`run CONFIG` validates the config, creates or resumes its run directory, lists the jobs (done / failed / to do)
and executes them with the project's engine (goldenlayers.runs.engine); launched by `torchrun --nproc-per-node N
-m goldenlayers run CONFIG` every process joins (goldenlayers.runs.distributed) and the cells are spread.
`--retry-failed-cells` redoes the cells that failed in finished jobs (goldenlayers.runs.reopen_failed_cells).
`--preset`, `--set key=value` and `--stats` override every method's preset and settings and the key statistics'
source, as `edit`/`evaluate` take them.
Bad input (invalid config, changed config on resume, not a run directory) prints a clear message and exits with
status 2.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from goldenlayers.cli import STARTED


def _console():
    from goldenlayers.cli.common import make_console

    return make_console()


def run_cmd(
    config: Path = typer.Argument(..., help="experiment config (YAML), e.g. configs/default.yaml"),
    root: Path | None = typer.Option(None, help="parent directory of the run (default: the config's output_dir)"),
    force: bool = typer.Option(False, "--force", help="resume even though the config changed (keeps the old one)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="create/resume the run directory, list the jobs and check "
                                                          "the models, files, settings, layers and statistics "
                                                          "sources without editing (exit 2 on a problem)"),
    progress: bool = typer.Option(True, help="show progress bars"),
    retry_failed_cells: bool = typer.Option(False, "--retry-failed-cells",
                                            help="redo the (case, layer) cells that failed in finished jobs (their "
                                                 "failure rows are dropped), e.g. after fixing their cause"),
    preset: str | None = typer.Option(None, help="editing preset of every method (the config's methods[].preset)"),
    set_: list[str] = typer.Option([], "--set", help="override an editing setting of every method: key=value "
                                                       "(repeatable; merged into methods[].hparams)"),
    stats: str | None = typer.Option(None, help="text source of the key statistics C (the config's stats.source)"),
    repair: bool = typer.Option(False, "--repair", help="replace a damaged store.sqlite by every row that can "
                                                        "still be read (the damaged file is kept), then go on"),
) -> None:
    """Create or resume the run directory of CONFIG and execute its jobs (resumable: run it again to go on).
    Under `torchrun --nproc-per-node N -m goldenlayers run CONFIG` the cells are spread over N processes."""
    from goldenlayers.cli.common import fail
    from goldenlayers.runs import (
        ConfigError,
        ConfigMismatchError,
        RunDir,
        RunLockedError,
        StoreDamagedError,
        load_config,
        reopen_failed_cells,
    )

    con = _console()
    if root is not None and root.exists() and not root.is_dir():
        fail(f"{root} is a file; give the directory that holds (or will hold) the run", option="--root")
    try:
        cfg = with_overrides(load_config(config), str(config), preset, set_, stats)
    except ConfigError as e:
        con.print(f"[red]error:[/red] {_esc(e)}", soft_wrap=True)
        raise typer.Exit(2) from None

    def make_run():
        run = RunDir.create_or_resume(cfg, root, force=force, command=f"goldenlayers run {config}", repair=repair)
        if run.repaired is not None:
            kept = ", ".join(f"{n} {t}" for t, n in run.repaired.items())
            con.print(f"repaired {_esc(run.path / 'store.sqlite')}: kept {kept} row(s); the damaged file is kept "
                      "beside it as store.sqlite.damaged-*", soft_wrap=True)
        if retry_failed_cells and not dry_run:  # on rank 0 only, before the other ranks open the run
            for key, n in reopen_failed_cells(run).items():
                con.print(f"reopened {_esc(key)}: {n} failure row(s) dropped, their cells will be redone",
                          soft_wrap=True)
        return run

    con.print("models: " + ", ".join(f"[bold]{_esc(m.name)}[/bold]" + (f" ({_esc(m.path)})" if m.path else "")
                                     for m in cfg.models), soft_wrap=True)
    _, summary = execute_config(cfg, root=root, force=force, dry_run=dry_run, progress=progress, make_run=make_run,
                                errors=(ConfigError, ConfigMismatchError, RunLockedError, StoreDamagedError),
                                source=str(config))
    if dry_run:
        _check(con, cfg)
    if summary is not None and not summary.ok and _rank() == 0:
        raise typer.Exit(FAILED_EXIT)


def _check(con, cfg) -> None:
    """--dry-run: resolve what the run will need (goldenlayers.runs.check); exit 2 listing the problems."""
    from goldenlayers.runs.check import check_config

    notes, problems = check_config(cfg)
    for line in notes:
        con.print(f"  {_esc(line)}", soft_wrap=True)
    if problems:
        con.print(f"[red]error:[/red] {len(problems)} problem(s) found by the dry run:", soft_wrap=True)
        for line in problems:
            con.print(f"  - {_esc(line)}", soft_wrap=True)
        raise typer.Exit(2)
    con.print("dry run: models, datasets, settings, layers and statistics sources resolve", soft_wrap=True)


FAILED_EXIT = 3  # `goldenlayers run` finished the rest but a job failed or the store holds failure rows


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def print_failures(con, store) -> int:
    """Print the store's failure rows (grouped counts, then the first reasons); returns how many there are."""
    from goldenlayers.runs.store import failure_lines

    total = store.count("failures")
    if total:
        con.print(f"[red]{total} failure row(s)[/red] in {_esc(store.path)} (`goldenlayers export` lists them all):",
                  soft_wrap=True)
        for line in failure_lines(store, limit=10):
            con.print(f"  {_esc(line)}", soft_wrap=True)
    return total


def with_overrides(cfg, label: str, preset: str | None, set_: list[str], stats: str | None):
    """The config with the command line's --preset (every method's preset), --set (merged into the hparams of
    every method whose settings class has the key) and --stats (stats.source), validated again; the run directory stores this config (a resumed run
    then needs the same options, or --force)."""
    if preset is None and not set_ and stats is None:
        return cfg
    from goldenlayers.cli.edit import _parse_settings
    from goldenlayers.runs import ConfigError
    from goldenlayers.runs.config import validate_config

    try:
        overrides = _parse_settings(set_)
    except typer.BadParameter as e:
        raise ConfigError(label, [str(e)]) from None
    data = cfg.model_dump(mode="json")
    from goldenlayers.editing import get_method

    fields = {m["name"]: set(get_method(m["name"]).settings.model_fields) for m in data["methods"]}
    unknown = [k for k in overrides if not any(k in f for f in fields.values())]
    if unknown:  # a setting of one method's class only goes to the methods that have it (w: MEMIT/EMMET)
        import difflib

        known = sorted(set().union(*fields.values()))
        raise ConfigError(label, [f"--set {k}: no configured method has this setting" + "".join(
            f" (did you mean {n!r}?)" for n in difflib.get_close_matches(k, known, n=1)) for k in unknown])
    for method in data["methods"]:
        method["preset"] = preset or method["preset"]
        mine = {k: v for k, v in overrides.items() if k in fields[method["name"]]}
        method["hparams"] = {**method["hparams"], **mine}
    if stats is not None:
        data["stats"]["source"] = stats
    return validate_config(data, label)


def execute_config(cfg, *, make_run, root=None, force=False, dry_run=False, progress=True, errors=(), con=None,
                   source="config"):
    """Create/resume the run with `make_run()`, list its jobs and execute them (on every rank of a torchrun
    launch: goldenlayers.runs.distributed). `errors`: exceptions of make_run shown as a message (exit 2); so is
    a model of the config (`source`) that is no known name, existing path or hub name.
    Returns the RunDir (closed) and the ExecuteSummary (None when nothing was executed)."""
    from rich.table import Table

    from goldenlayers.runs import distributed as D
    from goldenlayers.runs import execute, plan

    con = con or _console()
    multi = D.world_size() > 1 and not dry_run
    spread = [m.name for m in cfg.models if m.device_map is not None]
    if multi and spread:
        if os.environ.get("RANK", "0") == "0":
            con.print(f"[red]error:[/red] model(s) {', '.join(spread)} have a device_map (one model spread over "
                      "several GPUs), but under torchrun every process holds a whole model on its own GPU; run "
                      "this config as one process (`goldenlayers run CONFIG`), or drop device_map")
        raise typer.Exit(2)
    from goldenlayers.runs.config import ConfigError, check_models

    try:
        if not dry_run:  # a dry run lists the models' problems with the rest (goldenlayers.runs.check)
            check_models(cfg, source)
    except ConfigError as e:
        con.print(f"[red]error:[/red] {_esc(e)}")
        raise typer.Exit(2) from None
    rank, world, device = D.init() if multi else (0, 1, None)
    try:
        run = D.open_run(make_run) if multi else make_run()
    except errors as e:
        con.print(f"[red]error:[/red] {_esc(e)}", soft_wrap=True)
        raise typer.Exit(2) from None
    except D.WorkerAbort:
        raise typer.Exit(2) from None
    jobs, status = plan(cfg), run.store.jobs()
    if rank == 0:
        table = Table(title=f"{run.path}: {len(jobs)} jobs" + (f" on {world} processes" if multi else ""))
        for col in ("#", "job", "status"):
            table.add_column(col)
        for i, job in enumerate(jobs):
            table.add_row(str(i), job.describe(), status.get(job.key, {}).get("status", "to do"))
        con.print(table)
    from goldenlayers.runs.engine import make_engine

    if multi:
        engine = make_engine(rank, world, device, progress=progress and rank == 0)
    else:
        engine = None if dry_run else make_engine(progress=progress)
    if engine is None:
        todo = sum(status.get(j.key, {}).get("status") != "done" for j in jobs)
        why = "--dry-run" if dry_run else "the execution engine is not wired yet (goldenlayers.runs.engine)"
        con.print(f"{why}: nothing executed; {todo} job(s) would run, writing to {run.path / 'store.sqlite'}",
                  soft_wrap=True)
        run.close()
        return run, None
    timeline = getattr(engine, "timeline", None)
    if timeline is not None:
        timeline.add("start-up", time.perf_counter() - STARTED)
    try:
        summary = D.execute_distributed(run, engine, jobs) if multi else execute(run, engine, jobs)
        if timeline is not None:  # every rank takes part in the gather
            times = D.gather(timeline.describe()) if multi else [timeline.describe()]
    finally:
        engine.close()
        if multi:
            D.finish()
    if rank == 0:
        con.print(f"done {len(summary.done)}, skipped (finished before) {len(summary.skipped)}, "
                  f"failed {len(summary.failed)}")
        for key, reason in summary.failed.items():
            con.print(f"  [red]failed[/red] {_esc(key)}: {_esc(reason)}", soft_wrap=True)
        summary.failure_rows = print_failures(con, run.store)
        if timeline is not None:
            for i, line in enumerate(times):
                con.print(f"time{f' of process {i}' if multi else ''}: {_esc(line)}", soft_wrap=True)
    run.close()
    return run, summary


def _esc(x) -> str:
    from rich.markup import escape

    return escape(str(x))


def report_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory (holds config.yaml and store.sqlite)"),
    out: Path | None = typer.Option(None, help="output directory (default: RUN_DIR/report)"),
    method: str = typer.Option("r-rome", help="editing method of Table 1, Tables 3-8 and Figures 1-3"),
    overall_weights: str = typer.Option("", help="Overall weights, e.g. rewrite=2,fluency=0 (default: all 1)"),
    table1_split: str = typer.Option("test", help="cases of Table 1: test | all"),
) -> None:
    """Write the paper-style tables and figures of a run as report.md and a self-contained report.html."""
    from pydantic import ValidationError

    from goldenlayers.cli.common import error_line, fail
    from goldenlayers.evaluation.overall import OverallSpec
    from goldenlayers.report import ReportSettings, report
    from goldenlayers.runs import ConfigError, StoreDamagedError
    from goldenlayers.runs.config import METHODS, known

    con = _console()
    try:
        known(method, METHODS, "editing method")
    except ValueError as e:
        fail(e, option="--method")
    try:
        spec = OverallSpec.parse(overall_weights)
    except ValueError as e:
        fail(e, option="--overall-weights")
    try:
        settings = ReportSettings(method=method, overall=spec, table1_split=table1_split)
    except ValidationError as e:
        fail(error_line(e, options=True))
    try:
        result = report(run_dir, out, settings)
    except (FileNotFoundError, ConfigError, StoreDamagedError) as e:
        fail(e)
    if result.status:
        con.print(f"[yellow]{_esc(result.status)}[/yellow]", soft_wrap=True)
    con.print(f"{len(result.tables)} tables, {len(result.figures)} figures -> {result.html}"
              + (" (partial run)" if result.status else ""), soft_wrap=True)
    for line in result.left_out:
        con.print(f"  left out: {_esc(line)}", soft_wrap=True)


def export_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    fmt: str = typer.Option("csv", "--format", help="csv | parquet (parquet needs pyarrow)"),
    dest: Path | None = typer.Option(None, help="output directory (default: RUN_DIR/exports)"),
) -> None:
    """Export the run store's results, selectors and failures tables."""
    from goldenlayers.cli.common import fail
    from goldenlayers.runs import RunDir, StoreDamagedError
    from goldenlayers.runs.export import MissingDependencyError

    con = _console()
    try:
        with RunDir.open(run_dir) as run:
            run.merge_shards()
            paths = run.export(fmt, dest)
    except (FileNotFoundError, ValueError, MissingDependencyError, StoreDamagedError) as e:
        fail(e)
    for p in paths:
        con.print(str(p), soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("report")(report_cmd)
    app.command("export")(export_cmd)
