"""Training a list of recipes, one run folder each, for a side-by-side comparison.

`plan_recipes` checks every recipe before any trains (schema, corpus, a free run
folder, distinct names); `train_recipes` trains them in turn, and one that fails
does not cost the others their run. `lstmlab train recipes/tiny` and `make zoo`
use them; `lstmlab.compare.collect` reads the runs back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lstmlab import runs
from lstmlab.config import RunConfig, load_recipe, validate
from lstmlab.errors import ConfigError, LstmlabError, UsageError
from lstmlab.progress import Progress
from lstmlab.train import TrainingInterrupted, TrainResult, fit, open_run_corpus


def recipe_run_names(files: list[Path], cfgs: list[RunConfig]) -> list[str]:
    """<recipe>-<corpus>, or <folder>-<recipe>-<corpus> where two recipes share a file name."""
    stems = [p.stem for p in files]
    names = []
    for path, cfg in zip(files, cfgs):
        stem = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}-{path.stem}"
        names.append(runs.validate_run_name(cfg.name or f"{stem}-{cfg.data.corpus}"))
    if len(set(names)) != len(names):
        raise UsageError(
            "two recipes would train into the same run folder", hint="give them distinct `name:`s"
        )
    return names


@dataclass
class RecipeOutcome:
    recipe: Path
    run_dir: Path
    result: TrainResult | None = None
    error: str | None = None


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' -> distinct seeds in order (UsageError otherwise)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, sep, last = part.strip().partition("-")
            span = range(int(first), int(last) + 1) if sep else [int(first)]
            seeds += [s for s in span if s not in seeds]
    except ValueError:
        seeds = []
    if not seeds or any(not 0 <= s < 2**63 for s in seeds):
        raise UsageError(
            f"--seeds {text!r} is not a list of seeds", hint="e.g. --seeds 0,1,2 or --seeds 0-4"
        )
    return seeds


def plan_recipes(
    files: list[Path],
    overrides: list[str],
    runs_dir: Path,
    *,
    force: bool,
    seeds: list[int] | None = None,
) -> list[tuple[Path, RunConfig, Path]]:
    """Every recipe checked first (recipe, corpus, free folder): (recipe, config, run folder).

    With `seeds`, each recipe trains once per seed into `<name>-s<seed>`; runs that
    differ only in their seed form one group in `lstmlab compare`.
    """
    cfgs, problems = [], []
    for path in files:
        try:
            cfgs.append(load_recipe(path, overrides))
        except ConfigError as exc:
            problems.append(exc.message)
    if problems:
        raise ConfigError("\n".join(problems), hint="fix the recipe(s) or the --set override(s)")
    names = recipe_run_names(files, cfgs)
    if seeds:
        files = [path for path in files for _ in seeds]
        names = [f"{name}-s{seed}" for name in names for seed in seeds]
        cfgs = [_with_seed(cfg, seed) for cfg in cfgs for seed in seeds]
    targets = [Path(runs_dir) / name for name in names]
    for cfg, target in zip(cfgs, targets):
        open_run_corpus(cfg)
        occupied = target.is_dir() and any(target.iterdir()) and not runs.never_started(target)
        if not force and (occupied or (target.exists() and not target.is_dir())):
            raise UsageError(
                f"run folder {target} already exists",
                hint="pick another --runs-dir, or pass --force to replace the runs",
            )
    return list(zip(files, cfgs, targets))


def budget_mismatch(plan: list[tuple[Path, RunConfig, Path]]) -> str | None:
    """One line naming each recipe's budget when they differ (their final figures then
    compare unequal amounts of training), else None."""
    from lstmlab.compare import budget_text

    budgets = {path: budget_text(cfg.to_dict()["train"]) for path, cfg, _target in plan}
    if len(set(budgets.values())) < 2:
        return None
    listed = "; ".join(f"{path.name}: {budget}" for path, budget in budgets.items())
    return (
        f"the recipes' budgets differ ({listed}), so their final figures are not at equal "
        "budget (`lstmlab compare` also reads them at equal tokens and time); to train them "
        "on equal tokens pass --set train.max_tokens=N and null the other budgets "
        "(--set train.max_minutes=null ...)"
    )


def _with_seed(cfg: RunConfig, seed: int) -> RunConfig:
    data = cfg.to_dict()
    data["seed"] = seed
    return validate(data)


def train_recipes(
    plan: list[tuple[Path, RunConfig, Path]],
    *,
    force: bool = False,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    on_event: Callable[[dict], None] | None = None,
    on_start: Callable[[RunConfig, Path], None] | None = None,
    on_done: Callable[[RecipeOutcome], None] | None = None,
) -> list[RecipeOutcome]:
    """Train each planned recipe in turn; one that fails does not cost the others their run.

    `on_done` sees each outcome as it ends, so a failure is told when it happens, not only
    after the recipes behind it have trained.
    """
    outcomes = []
    for path, cfg, target in plan:
        if on_start:
            on_start(cfg, target)
        try:
            result = fit(
                cfg, target, force=force, device=device, progress=progress, on_event=on_event
            )
            outcome = RecipeOutcome(path, target, result=result)
        except (TrainingInterrupted, KeyboardInterrupt):
            raise
        except Exception as exc:  # one broken recipe must not cost the others their run
            message = (
                exc.message if isinstance(exc, LstmlabError) else f"{type(exc).__name__}: {exc}"
            )
            outcome = RecipeOutcome(path, target, error=message)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes


__all__ = [
    "RecipeOutcome",
    "budget_mismatch",
    "parse_seeds",
    "plan_recipes",
    "recipe_run_names",
    "train_recipes",
]
