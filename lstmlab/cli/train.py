"""`lstmlab train`: train a recipe into a run folder, or resume one."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.markup import escape
from rich.table import Table

from lstmlab import runs
from lstmlab.catalog import recipe_files
from lstmlab.cli.common import RichProgress, console, err_console, fail, handle_errors
from lstmlab.cli.compare import print_comparison
from lstmlab.cli.options import DeviceOpt, SetOpt
from lstmlab.compare import collect
from lstmlab.config import RunConfig, load_recipe
from lstmlab.device import resolve_device
from lstmlab.distributed import DistContext, init_from_env, launched_by_torchrun, shutdown
from lstmlab.errors import ConfigError, LstmlabError, TrainingError, UsageError
from lstmlab.train import (
    TrainingInterrupted,
    TrainResult,
    check_architecture,
    fit,
    load_run_config,
    open_run_corpus,
)


@handle_errors
def train_cmd(
    recipes: Annotated[
        list[Path] | None,
        typer.Argument(
            help="YAML recipe(s) or folder(s) of recipes, e.g. recipes/tiny/lstm.yaml or recipes/tiny.",
            show_default=False,
        ),
    ] = None,
    overrides: SetOpt = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default: <runs-dir>/<recipe>-<corpus>-<time>).")
    ] = None,
    runs_dir: Annotated[Path, typer.Option(help="Parent folder for new runs.")] = Path("runs"),
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its last checkpoint.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace an existing --run-dir instead of refusing.")
    ] = False,
    device: DeviceOpt = "auto",
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and print the resolved recipe(s); train nothing."),
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(
            min=1, help="Data-parallel processes on this machine (launches torchrun for you)."
        ),
    ] = 1,
) -> None:
    """Train a model from a recipe (truncated BPTT, checkpoints, validation, metrics.jsonl).

    Several recipes, or a folder of them, train one after another into --runs-dir
    (one run folder each, named <recipe>-<corpus>) and end with `lstmlab compare`.
    """
    overrides = overrides or []
    files = expand_recipes(recipes or [])
    if len(files) > 1 or any(p.is_dir() for p in recipes or []):
        if resume is not None or run_dir is not None:
            raise UsageError(
                "--resume and --run-dir take one run; several recipes each get a folder in --runs-dir"
            )
        if nproc > 1:
            raise UsageError(
                "--nproc trains one recipe at a time",
                hint="run the recipes one by one with --nproc",
            )
        if dry_run:
            for path in files:
                _show_resolved(load_recipe(path, overrides))
            return
        train_many(files, overrides, runs_dir, force=force, device=device)
        return
    recipe = files[0] if files else None
    if resume is not None:
        if run_dir is not None:
            raise UsageError(
                "--resume and --run-dir both name a run folder", hint="pass only --resume RUN"
            )
        cfg = load_run_config(resume, overrides)
        if recipe is not None:
            recipe_cfg = load_recipe(recipe, overrides)
            check_architecture(recipe_cfg, cfg.to_dict(), resume)
            cfg = recipe_cfg
        target = resume
        if not runs.checkpoint_path(target, "last").is_file():
            raise UsageError(
                f"{target} has no checkpoints/last.pt to resume from",
                hint="start it again without --resume",
            )
    else:
        if recipe is None:
            raise UsageError(
                "no recipe given",
                hint="e.g. `lstmlab train recipes/tiny/lstm.yaml`, or --resume RUN",
            )
        cfg = load_recipe(recipe, overrides)
        target = run_dir or runs_dir / (
            cfg.name or runs.default_run_name(recipe, cfg.data.corpus, cfg.model.cell.kind)
        )
    if dry_run:
        _show_resolved(cfg)
        return
    if nproc > 1 and not launched_by_torchrun():
        argv = _forwarded_args(recipe, overrides, target, resume, force, device)
        raise typer.Exit(_launch_torchrun(nproc, argv))
    dev = resolve_device(device)
    ctx = init_from_env(dev.type)
    try:
        if ctx.enabled:
            target = Path(ctx.broadcast(str(target)))  # every rank writes under rank 0's run name
            if dev.type == "cuda":
                dev = torch.device("cuda", ctx.local_rank)
                torch.cuda.set_device(dev)
            if not ctx.is_main:
                console.quiet = err_console.quiet = True
        open_run_corpus(cfg)  # a missing corpus is reported before the run folder is made
        if resume is None:
            _prepare_on_main(target, force=force, ctx=ctx)
        train_one(cfg, target, resume=resume is not None, device=dev, ctx=ctx)
    finally:
        shutdown()


def _prepare_on_main(target: Path, *, force: bool, ctx: DistContext) -> None:
    """Rank 0 creates the run folder; every rank learns whether that worked."""
    problem = None
    if ctx.is_main:
        try:
            runs.prepare_run_dir(target, force=force)
        except LstmlabError as exc:
            problem = (exc.message, exc.hint)
    problem = ctx.broadcast(problem)
    if problem:
        raise UsageError(*problem)


def train_one(
    cfg: RunConfig, target: Path, *, resume: bool, device, ctx: DistContext | None = None
) -> TrainResult:
    """Train one run into `target` (which exists) and print its summary (rank 0 only under torchrun)."""
    ctx = ctx or DistContext()
    ranks = f", {ctx.world_size} processes" if ctx.enabled else ""
    console.print(
        f"[bold]run[/] {escape(str(target))}  [dim]({cfg.model.cell.kind} on {cfg.data.corpus}, {device}{ranks})[/]"
    )
    try:
        result = fit(cfg, target, resume=resume, device=device, progress=RichProgress(), dist=ctx)
    except KeyboardInterrupt:  # a second Ctrl-C: stop now; checkpoints are written atomically
        raise fail(
            UsageError(
                "training stopped at once by a second Ctrl-C; the last saved checkpoint is intact",
                hint=f"continue with `lstmlab train --resume {target}`",
            ),
            exit_code=130,
        ) from None
    table = Table(title=escape(f"trained {target}"), show_header=False)
    table.add_row("stopped at", f"step {result.state.step} ({result.stop_reason})")
    table.add_row("parameters", f"{result.num_parameters:,}")
    table.add_row("tokens seen", f"{result.state.tokens_seen:,}")
    table.add_row("wall time", f"{result.state.elapsed_s:.1f} s")
    table.add_row("train tokens/s", f"{result.tokens_per_s:,.0f}")
    if result.final_valid:
        table.add_row("valid bpc (last)", f"{result.final_valid['bpc']:.4f}")
    if math.isfinite(result.state.best_valid_bpc):
        table.add_row(
            "valid bpc (best)",
            f"{result.state.best_valid_bpc:.4f} at step {result.state.best_step}",
        )
    console.print(table)
    console.print(
        f"next: [bold]lstmlab eval {escape(str(target))}[/] and [bold]lstmlab sample {escape(str(target))}[/]"
    )
    return result


def expand_recipes(paths: list[Path]) -> list[Path]:
    """Recipe files as given, folders replaced by every *.yaml below them (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = recipe_files(path)
            if not found:
                raise UsageError(f"{path} holds no *.yaml recipe", hint="e.g. recipes/tiny")
            files.extend(found)
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def batch_run_names(files: list[Path], cfgs: list[RunConfig]) -> list[str]:
    """<recipe>-<corpus>, or <folder>-<recipe>-<corpus> where two recipes share a file name."""
    stems = [p.stem for p in files]
    names = []
    for path, cfg in zip(files, cfgs):
        stem = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}-{path.stem}"
        names.append(cfg.name or f"{stem}-{cfg.data.corpus}")
    if len(set(names)) != len(names):
        raise UsageError(
            "two recipes would train into the same run folder", hint="give them distinct `name:`s"
        )
    return names


def train_many(
    files: list[Path], overrides: list[str], runs_dir: Path, *, force: bool, device: str
) -> None:
    """Every recipe checked first (recipe, corpus, free folder), then trained in turn, then compared."""
    cfgs, problems = [], []
    for path in files:
        try:
            cfgs.append(load_recipe(path, overrides))
        except ConfigError as exc:
            problems.append(exc.message)
    if problems:
        raise ConfigError("\n".join(problems), hint="fix the recipe(s) or the --set override(s)")
    targets = [runs_dir / name for name in batch_run_names(files, cfgs)]
    for cfg, target in zip(cfgs, targets):
        open_run_corpus(cfg)
        if target.is_dir() and any(target.iterdir()) and not force:
            raise UsageError(
                f"run folder {target} already exists",
                hint="pick another --runs-dir, or pass --force to replace the runs",
            )
    dev = resolve_device(device)
    failed = []
    for path, cfg, target in zip(files, cfgs, targets):
        runs.prepare_run_dir(target, force=force)
        try:
            train_one(cfg, target, resume=False, device=dev)
        except TrainingInterrupted:
            raise
        except Exception as exc:  # one broken recipe must not cost the others their run
            message = (
                exc.message if isinstance(exc, LstmlabError) else f"{type(exc).__name__}: {exc}"
            )
            err_console.print(f"[bold red]error:[/] {escape(f'{path}: {message}')}", soft_wrap=True)
            failed.append(path)
    rows, warnings = collect(targets, allow_mixed=True)
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    print_comparison(rows, title=f"compared: {runs_dir}")
    if failed:
        raise TrainingError(
            f"{len(failed)} of {len(files)} recipes failed: {', '.join(map(str, failed))}",
            hint="see the error above each; the other runs are complete",
        )


def _show_resolved(cfg) -> None:
    """Print the validated recipe with every default filled in, and its size when the corpus is prepared."""
    import yaml

    from lstmlab.errors import CorpusError
    from lstmlab.model import build_model
    from lstmlab.train import open_run_corpus

    console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), markup=False)
    try:
        corpus = open_run_corpus(cfg)
    except CorpusError as exc:
        console.print(f"[dim]parameters: unknown ({escape(exc.message)})[/]")
        return
    params = build_model(cfg.model, corpus.vocab_size).num_parameters()
    console.print(
        f"parameters: {params:,} (vocabulary {corpus.vocab_size} of corpus {escape(corpus.name)})"
    )


def _forwarded_args(recipe, overrides, target, resume, force, device) -> list[str]:
    """The same training command for each torchrun worker, with the run folder fixed."""
    argv = (
        ["--resume", str(resume)] if resume is not None else [str(recipe), "--run-dir", str(target)]
    )
    for text in overrides:
        argv += ["--set", text]
    if force:
        argv.append("--force")
    return [*argv, "--device", device]


def _launch_torchrun(nproc: int, argv: list[str]) -> int:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "lstmlab",
        "train",
        *argv,
    ]
    console.print(f"[dim]launching: {escape(' '.join(cmd))}[/]")
    return subprocess.call(cmd)
