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
from lstmlab.cli.common import RichProgress, console, err_console, fail, handle_errors
from lstmlab.cli.options import DeviceOpt, SetOpt
from lstmlab.config import load_recipe
from lstmlab.device import resolve_device
from lstmlab.distributed import init_from_env, launched_by_torchrun, shutdown
from lstmlab.errors import LstmlabError, UsageError
from lstmlab.train import fit, load_run_config


@handle_errors
def train_cmd(
    recipe: Annotated[
        Path | None,
        typer.Argument(help="YAML recipe, e.g. recipes/tiny/lstm.yaml.", show_default=False),
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
        typer.Option("--dry-run", help="Validate and print the resolved recipe; train nothing."),
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(
            min=1, help="Data-parallel processes on this machine (launches torchrun for you)."
        ),
    ] = 1,
) -> None:
    """Train a model from a recipe (truncated BPTT, checkpoints, validation, metrics.jsonl)."""
    overrides = overrides or []
    if resume is not None:
        if run_dir is not None:
            raise UsageError(
                "--resume and --run-dir both name a run folder", hint="pass only --resume RUN"
            )
        cfg = load_run_config(resume, overrides)
        if recipe is not None:
            recipe_cfg = load_recipe(recipe, overrides)
            from lstmlab.train import check_architecture

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
        _train(cfg, target, resume=resume is not None, force=force, dev=dev, ctx=ctx)
    finally:
        shutdown()


def _train(cfg, target: Path, *, resume: bool, force: bool, dev, ctx) -> None:
    """Run (or join, under torchrun) one training run and print its summary on rank 0."""
    from lstmlab.train import open_run_corpus

    if ctx.enabled:
        target = Path(ctx.broadcast(str(target)))  # every rank writes under rank 0's run name
        if dev.type == "cuda":
            dev = torch.device("cuda", ctx.local_rank)
            torch.cuda.set_device(dev)
        if not ctx.is_main:
            console.quiet = err_console.quiet = True
    open_run_corpus(cfg)  # a missing corpus is reported before the run folder is made
    if not resume:
        problem = None
        if ctx.is_main:
            try:
                runs.prepare_run_dir(target, force=force)
            except LstmlabError as exc:
                problem = (exc.message, exc.hint)
        problem = ctx.broadcast(problem)
        if problem:
            raise UsageError(*problem)
    ranks = f", {ctx.world_size} processes" if ctx.enabled else ""
    console.print(
        f"[bold]run[/] {escape(str(target))}  [dim]({cfg.model.cell.kind} on {cfg.data.corpus}, {dev}{ranks})[/]"
    )
    try:
        result = fit(cfg, target, resume=resume, device=dev, progress=RichProgress(), dist=ctx)
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
