"""`lstmlab train`: train a recipe into a run folder, or resume one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lstmlab import runs
from lstmlab.cli.common import (
    RichProgress,
    console,
    err_console,
    exit_now,
    fail,
    handle_errors,
    print_table,
)
from lstmlab.cli.options import DeviceOpt, SetOpt
from lstmlab.errors import TrainingError, UsageError

if TYPE_CHECKING:
    from lstmlab.config import RunConfig


RecipesArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="YAML recipe(s) or folder(s) of recipes, e.g. recipes/tiny/lstm.yaml or recipes/tiny.",
        metavar="RECIPE...",
        show_default=False,
    ),
]
RunDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Run folder (default: <runs-dir>/<recipe>-<corpus>-<time>).",
        metavar="DIR",
        show_default=False,
    ),
]
RunsDirOpt = Annotated[Path, typer.Option(help="Parent folder for new runs.", metavar="DIR")]
ResumeOpt = Annotated[
    Path | None,
    typer.Option(
        help="Continue the run in this folder from its last checkpoint.",
        metavar="RUN",
        show_default=False,
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(help="Replace an existing lstmlab run folder (never any other folder)."),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Validate and print the resolved recipe(s); train nothing."),
]
LoggersOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--logger",
        metavar="NAME",
        help="Also send metrics to a tracker: tensorboard, wandb or mlflow (repeatable; "
        "adds to train.loggers; each is an extra: pip install 'lstmlab[NAME]').",
        show_default=False,
    ),
]
InitFromOpt = Annotated[
    str | None,
    typer.Option(
        metavar="RUN|EXPORT|hf://ID",
        help="Start from trained weights (fine-tuning): sets train.init_from.",
        show_default=False,
    ),
]
ExtendVocabOpt = Annotated[
    bool,
    typer.Option(
        "--extend-vocab",
        help="With --init-from and char vocabularies: fresh rows for symbols the source lacks.",
    ),
]
SeedsOpt = Annotated[
    str | None,
    typer.Option(
        metavar="SEEDS",
        help="Train one run per seed (e.g. 0,1,2 or 0-4) into --runs-dir as <name>-s<seed>.",
        show_default=False,
    ),
]
NprocOpt = Annotated[
    int,
    typer.Option(
        min=1,
        metavar="INTEGER",
        help="Data-parallel processes on this machine (launches torchrun for you).",
    ),
]


@handle_errors
def train_cmd(
    recipes: RecipesArg = None,
    overrides: SetOpt = None,
    run_dir: RunDirOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    resume: ResumeOpt = None,
    force: ForceOpt = False,
    device: DeviceOpt = "auto",
    dry_run: DryRunOpt = False,
    loggers: LoggersOpt = None,
    init_from: InitFromOpt = None,
    extend_vocab: ExtendVocabOpt = False,
    seeds: SeedsOpt = None,
    nproc: NprocOpt = 1,
) -> None:
    """Train a model from a recipe (truncated BPTT, checkpoints, validation, metrics.jsonl).

    Several recipes, or a folder of them, train one after another into --runs-dir
    (one run folder each, named <recipe>-<corpus>) and end with `lstmlab compare`.
    """
    from lstmlab import zoo
    from lstmlab.catalog import find_recipe
    from lstmlab.config import load_recipe

    if resume is not None:
        resume = runs.resolve_run(resume, runs_dir)  # `--resume latest`
    overrides = [*(overrides or []), *_logger_override(recipes, resume, overrides, loggers)]
    if init_from is not None:
        overrides.append(f"train.init_from={json.dumps(init_from)}")
    if extend_vocab:
        overrides.append("train.extend_vocab=true")
    files = expand_recipes(recipes or [])
    folders = any(find_recipe(p).is_dir() for p in recipes or [])
    if seeds is not None or len(files) > 1 or folders:
        _check_many(resume, run_dir, nproc)
        if dry_run:
            for path in files:
                _show_resolved(load_recipe(path, overrides))
            return None
        seed_list = zoo.parse_seeds(seeds) if seeds is not None else None
        plan = zoo.plan_recipes(files, overrides, runs_dir, force=force, seeds=seed_list)
        return _train_many(plan, force, device)
    cfg, target = _single_run(files, overrides, run_dir, runs_dir, resume)
    if dry_run:
        return _show_resolved(cfg)
    if nproc > 1:
        return _relaunch(cfg, files, overrides, target, resume, force, device, nproc)
    _train_one(cfg, target, resume=resume is not None, force=force, device=device)


def _logger_override(recipes, resume, overrides, loggers) -> list[str]:
    """--logger NAME as a `train.loggers` override that keeps the recipe's own trackers."""
    if not loggers:
        return []
    from lstmlab.config import load_recipe
    from lstmlab.resume import load_run_config

    base: tuple[str, ...] = ()
    files = expand_recipes(recipes or [])
    if resume is not None:
        base = load_run_config(resume, overrides or []).train.loggers
    elif len(files) == 1:
        base = load_recipe(files[0], overrides or []).train.loggers
    return [f"train.loggers={json.dumps(list(dict.fromkeys([*base, *loggers])))}"]


def _single_run(files, overrides, run_dir, runs_dir, resume) -> tuple[RunConfig, Path]:
    """The recipe and run folder of a one-run command (fresh or --resume)."""
    from lstmlab.config import load_recipe
    from lstmlab.resume import resume_config

    recipe = files[0] if files else None
    if resume is not None:
        if run_dir is not None:
            raise UsageError(
                "--resume and --run-dir both name a run folder", hint="pass only --resume RUN"
            )
        return resume_config(resume, recipe, overrides), resume
    if recipe is None:
        raise UsageError(
            "no recipe given", hint="e.g. `lstmlab train recipes/tiny/lstm.yaml`, or --resume RUN"
        )
    cfg = load_recipe(recipe, overrides)
    if run_dir is not None:
        runs.validate_run_name(Path(run_dir).resolve().name)
        return cfg, run_dir
    name = cfg.name or runs.default_run_name(recipe, cfg.data.corpus, cfg.model.cell.kind)
    return cfg, runs_dir / runs.validate_run_name(name)


def _check_many(resume, run_dir, nproc) -> None:
    if resume is not None or run_dir is not None:
        raise UsageError(
            "--resume and --run-dir take one run; several recipes or --seeds each get a "
            "folder in --runs-dir",
            hint="drop --run-dir (use --runs-dir DIR), or resume the runs one by one",
        )
    if nproc > 1:
        raise UsageError(
            "--nproc trains one run at a time",
            hint="run the recipes (or seeds) one by one with --nproc",
        )


def _relaunch(cfg, files, overrides, target, resume, force, device, nproc) -> None:
    """Check what torchrun's workers would refuse, then start them (rank 0 prints)."""
    from lstmlab.distributed import launched_by_torchrun, relaunch_under_torchrun

    if launched_by_torchrun():
        return _train_one(cfg, target, resume=resume is not None, force=force, device=device)
    if cfg.train.batch_size % nproc:
        raise UsageError(
            f"--nproc {nproc} does not divide train.batch_size {cfg.train.batch_size}: each "
            "process takes an equal block of the streams",
            hint=f"use an --nproc that divides {cfg.train.batch_size}, or --set train.batch_size=N",
        )
    argv = [
        "train",
        *(["--resume", str(resume)] if resume else [str(files[0]), "--run-dir", str(target)]),
    ]
    for text in overrides:
        argv += ["--set", text]
    argv += [*(["--force"] if force else []), "--device", device]
    console.print(f"[dim]launching {nproc} processes under torchrun[/]")
    raise typer.Exit(relaunch_under_torchrun(argv, nproc))


def _train_one(cfg: RunConfig, target: Path, *, resume: bool, force: bool, device: str):
    """Train one run (as one process or one torchrun worker) and print its summary."""
    from lstmlab.device import resolve_device
    from lstmlab.distributed import init_from_env, shutdown
    from lstmlab.train import fit, open_run_corpus

    dev = resolve_device(device)
    ctx = init_from_env(dev.type)
    try:
        if ctx.enabled:
            target = Path(ctx.broadcast(str(target)))  # every rank writes under rank 0's run name
            dev = ctx.device_for(dev)
            if not ctx.is_main:
                console.quiet = err_console.quiet = True
        open_run_corpus(cfg)  # a missing corpus is reported before the run folder is made
        ranks = f", {ctx.world_size} processes" if ctx.enabled else ""
        console.print(
            f"[bold]run[/] {escape(str(target))}  "
            f"[dim]({cfg.model.cell.kind} on {cfg.data.corpus}, {dev}{ranks})[/]"
        )
        try:
            result = fit(
                cfg,
                target,
                resume=resume,
                force=force,
                device=dev,
                progress=RichProgress(),
                on_event=print_event,
                dist=ctx,
            )
        except KeyboardInterrupt:  # a second Ctrl-C: stop now; checkpoints are written atomically
            fail(second_interrupt(target))
            exit_now(130)
        print_summary(result)
        return result
    finally:
        shutdown()


def second_interrupt(target: Path) -> UsageError:
    """What a second Ctrl-C left behind, said truthfully."""
    if runs.checkpoint_path(target, "last").is_file():
        return UsageError(
            "training stopped at once by a second Ctrl-C; the last saved checkpoint is intact",
            hint=f"continue with `lstmlab train --resume {target}`",
        )
    return UsageError(
        "training stopped at once by a second Ctrl-C before any checkpoint was saved; "
        "nothing of this run was kept",
        hint="start it again with the same command",
    )


def print_event(record: dict) -> None:
    """Warnings, signal notices and validation results as they happen (stderr)."""
    kind = record.get("kind")
    if kind == "warning":
        err_console.print(f"[yellow]warning:[/] {escape(record['message'])}", soft_wrap=True)
    elif kind == "signal":
        err_console.print(
            f"[yellow]{record['signal']}:[/] stopping after the current step and saving "
            "last.pt (Ctrl-C again to stop at once)",
            soft_wrap=True,
        )
    elif kind == "valid":
        err_console.print(
            f"step {record['step']}: valid bpc {record['bpc']:.4f} "
            f"({record['tokens']:,} tokens seen)",
            soft_wrap=True,
        )
    elif kind == "sized":
        err_console.print(
            f"model.params {record['params']:,}: {record['cell']} hidden_dim "
            f"{record['hidden_dim']} gives {record['num_parameters']:,} parameters "
            f"(vocabulary {record['vocab_size']})",
            soft_wrap=True,
        )
    elif kind == "init":
        added = f", added {len(record['added'])} new symbols" if record["added"] else ""
        err_console.print(
            f"[dim]initialised from {escape(record['init_from'])} "
            f"({record['kept']} symbols kept{added})[/]",
            soft_wrap=True,
        )
    elif kind == "resume" and record.get("changed"):
        err_console.print(
            f"[dim]resumed at step {record['step']} with changed {escape(', '.join(record['changed']))}[/]",
            soft_wrap=True,
        )


def print_summary(result) -> None:
    p = result.state
    table = Table(title=escape(f"trained {result.run_dir}"), show_header=False)
    table.add_row("stopped at", f"step {p.step} ({result.stop_reason})")
    table.add_row("parameters", f"{result.num_parameters:,}")
    table.add_row("tokens seen", f"{p.tokens_seen:,}")
    table.add_row("wall time", f"{p.wall_s:.1f} s (with validation and checkpoints)")
    table.add_row("step time", f"{p.elapsed_s:.1f} s (what max_minutes counts)")
    table.add_row("train tokens/s", f"{result.tokens_per_s:,.0f} (per second of step time)")
    if result.final_valid:
        table.add_row("valid bpc (last)", f"{result.final_valid['bpc']:.4f}")
    if math.isfinite(p.best_valid_bpc):
        table.add_row("valid bpc (best)", f"{p.best_valid_bpc:.4f} at step {p.best_step}")
    print_table(table)
    target = escape(str(result.run_dir))
    console.print(f"next: [bold]lstmlab eval {target}[/] and [bold]lstmlab sample {target}[/]")


def _train_many(plan, force: bool, device: str) -> None:
    """Train a planned list of recipes, print each summary, then compare them."""
    from lstmlab.cli.compare import print_comparison
    from lstmlab.compare import collect
    from lstmlab.device import resolve_device
    from lstmlab.zoo import budget_mismatch, train_recipes

    if mismatch := budget_mismatch(plan):
        err_console.print(f"[yellow]warning:[/] {escape(mismatch)}", soft_wrap=True)

    def on_start(cfg, target) -> None:
        console.print(
            f"[bold]run[/] {escape(str(target))}  [dim]({cfg.model.cell.kind} on {cfg.data.corpus})[/]"
        )

    def on_done(outcome) -> None:  # said at once, before the next recipe trains
        if outcome.result is not None:
            print_summary(outcome.result)
            return
        err_console.print(
            f"[bold red]error:[/] {escape(f'{outcome.recipe}: {outcome.error}')}", soft_wrap=True
        )
        if outcome.run_dir != plan[-1][2]:
            err_console.print("[dim]going on with the next recipe[/]")

    outcomes = train_recipes(
        plan,
        force=force,
        device=resolve_device(device),
        progress=RichProgress(),
        on_event=print_event,
        on_start=on_start,
        on_done=on_done,
    )
    rows, warnings = collect([o.run_dir for o in outcomes if o.run_dir.is_dir()], allow_mixed=True)
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    print_comparison(rows, title=f"compared: {plan[0][2].parent}")
    failed = [str(o.recipe) for o in outcomes if o.error is not None]
    if failed:
        raise TrainingError(
            f"{len(failed)} of {len(outcomes)} recipes failed: {', '.join(failed)}",
            hint="see the error above each; the other runs are complete",
        )


def expand_recipes(paths: list[Path]) -> list[Path]:
    """Recipe files as given, folders replaced by every *.yaml below them (sorted)."""
    from lstmlab.catalog import find_recipe, recipe_files

    files: list[Path] = []
    for path in map(find_recipe, paths):
        if path.is_dir():
            found = recipe_files(path)
            if not found:
                raise UsageError(f"{path} holds no *.yaml recipe", hint="e.g. recipes/tiny")
            files.extend(found)
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def _show_resolved(cfg) -> None:
    """Print the validated recipe with every default filled in, and its size when the corpus is prepared."""
    from lstmlab.catalog import commented_yaml, count_parameters
    from lstmlab.errors import CorpusError
    from lstmlab.sizing import resolve
    from lstmlab.train import open_run_corpus

    try:
        corpus = open_run_corpus(cfg)
    except CorpusError as exc:
        console.print(commented_yaml(cfg), markup=False, end="", soft_wrap=True)
        console.print(f"[dim]parameters: unknown ({escape(exc.message)})[/]")
        return
    cfg = cfg.model_copy(update={"model": resolve(cfg.model, corpus.vocab_size)})
    console.print(commented_yaml(cfg), markup=False, end="", soft_wrap=True)
    params = count_parameters(cfg.model, corpus.vocab_size)
    budget = "" if cfg.model.params is None else f", within model.params {cfg.model.params:,}"
    console.print(
        f"parameters: {params:,} (vocabulary {corpus.vocab_size} of corpus "
        f"{escape(corpus.name)}{budget})"
    )
