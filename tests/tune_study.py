"""A small tuning study on the tiny corpus, shared by the tune tests (one per session)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from support import TINY_RECIPE
from tiny_run import write_tiny_corpus

# The example space of docs/tuning.md, on the tiny test recipe.
SPACE = {
    "train.optimizer.lr": {"low": 1.0e-6, "high": 3.0e-2, "log": True},
    "model.dropout.hidden": {"low": 0.0, "high": 0.5},
}
GOOD = {"train.optimizer.lr": 3.0e-2, "model.dropout.hidden": 0.0}
HOPELESS = {"train.optimizer.lr": 1.0e-6, "model.dropout.hidden": 0.0}  # learns nothing in 4 steps


def write_recipe(folder: Path, tune: dict, **train) -> Path:
    """TINY_RECIPE (4 steps, a validation every 2) with a `tune:` block, on a corpus in `folder`."""
    data_dir = folder / "data"
    if not (data_dir / "tiny").is_dir():
        write_tiny_corpus(data_dir)
    recipe = copy.deepcopy(TINY_RECIPE)
    recipe["data"]["data_dir"] = str(data_dir)
    recipe["train"].update({"max_steps": 4, "eval_every": 2, **train})
    recipe["tune"] = tune
    path = folder / "tiny-tune.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


PRUNING = {
    "space": SPACE,
    "random_trials": 2,
    "pruner": {"startup_trials": 1, "warmup_validations": 0},
}
_STUDY: dict[str, Path] = {}


def three_trials_study(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, study folder) of one 3-trial study, run once per session: trial 0 trains the
    good values, trial 1 the hopeless ones (pruned at its first validation), trial 2 is
    the sampler's. Read-only: copy the folder before continuing the study."""
    from lstmlab.tune import run_study

    if not _STUDY:
        root = tmp_path_factory.mktemp("study")
        recipe = write_recipe(root, PRUNING)
        _STUDY["recipe"], _STUDY["dir"] = recipe, root / "study"
        run_study(recipe, trials=3, study_dir=root / "study", first_params=[GOOD, HOPELESS])
    return _STUDY["recipe"], _STUDY["dir"]
