"""lstmlab.tune: small studies on the tiny corpus, offline; the `tune:` block's validation."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from lstmlab import compare, study
from lstmlab.config import load_recipe, validate
from lstmlab.errors import ConfigError
from lstmlab.tune import distributions, run_study

from support import TINY_RECIPE
from tune_study import GOOD, HOPELESS, SPACE, three_trials_study, write_recipe


@pytest.fixture
def optuna():
    return pytest.importorskip("optuna", reason="the tune extra is not installed")


@pytest.fixture
def three_trials(optuna, tmp_path_factory) -> tuple[Path, Path]:
    return three_trials_study(tmp_path_factory)


def _copy(study_dir: Path, dest: Path) -> Path:
    shutil.copytree(study_dir, dest)
    return dest


# ---------------------------------------------------------------- a study end to end


def test_a_study_writes_its_storage_trial_runs_and_best_recipe(three_trials):
    recipe, study_dir = three_trials
    assert (study_dir / "study.db").is_file() and study.is_study_dir(study_dir)
    rows = study.read_trials(study_dir)
    assert [r.number for r in rows] == [0, 1, 2]
    assert rows[0].params == GOOD and rows[1].params == HOPELESS
    for row in rows:  # every trial is an ordinary run folder, without the search space
        run = study_dir / f"trial-{row.number:04d}"
        assert row.run == str(run) and (run / "checkpoints" / "last.pt").is_file()
        assert "tune" not in yaml.safe_load((run / "config.yaml").read_text())
    best = next(r for r in rows if r.best)
    complete = [r for r in rows if r.state == "complete"]
    assert best.valid_bpc == min(r.valid_bpc for r in complete)
    # best.yaml loads as a plain recipe with the best trial's values
    text = (study_dir / "best.yaml").read_text()
    assert f"trial {best.number}, valid_bpc {best.valid_bpc:.4f}" in text
    assert "3 trials done" in text
    cfg = load_recipe(study_dir / "best.yaml")
    assert cfg.tune is None
    assert cfg.train.optimizer.lr == best.params["train.optimizer.lr"]
    assert cfg.model.dropout.hidden == best.params["model.dropout.hidden"]
    assert cfg.to_dict() == {
        **load_recipe(recipe).without_tune().to_dict(),
        "train": cfg.to_dict()["train"],
        "model": cfg.to_dict()["model"],
    }


def test_a_hopeless_trial_is_pruned_and_its_run_folder_ends_cleanly(optuna, three_trials):
    _recipe, study_dir = three_trials
    rows = study.read_trials(study_dir)
    good, hopeless = rows[0], rows[1]
    frozen = optuna.load_study(study_name="lstmlab", storage=study.storage_url(study_dir)).trials
    assert frozen[1].intermediate_values[128] > frozen[0].intermediate_values[128]
    assert good.state == "complete" and hopeless.state == "pruned"
    assert hopeless.tokens == 128  # its first validation: 2 steps of 4 x 16 tokens
    run = compare.read_run(study_dir / "trial-0001")
    assert run.state == "finished" and run.stop_reason == "pruned"
    assert run.tokens == 128 and run.best_step == 2


def test_running_again_with_more_trials_adds_exactly_that_many(three_trials, tmp_path):
    recipe, study_dir = three_trials
    copy_dir = _copy(study_dir, tmp_path / "continued")
    result = run_study(recipe, trials=4, study_dir=copy_dir)
    assert [r.number for r in result.trials] == [0, 1, 2, 3]
    assert result.trials[3].state in ("complete", "pruned")
    assert (copy_dir / "trial-0003" / "config.yaml").is_file()
    # a study already at its count trains nothing; a passed --timeout starts no trial
    again = run_study(recipe, trials=4, study_dir=copy_dir)
    assert len(again.trials) == 4 and again.stopped == "trials"
    timed = run_study(recipe, trials=9, study_dir=copy_dir, timeout_min=0)
    assert len(timed.trials) == 4 and timed.stopped == "timeout"


def test_a_trial_left_running_by_a_killed_process_runs_again_with_its_params(
    optuna, three_trials, tmp_path
):
    recipe, study_dir = three_trials
    copy_dir = _copy(study_dir, tmp_path / "killed")
    storage = study.storage_url(copy_dir)
    left = optuna.load_study(study_name="lstmlab", storage=storage).ask(
        {
            "train.optimizer.lr": optuna.distributions.FloatDistribution(1e-6, 3e-2, log=True),
            "model.dropout.hidden": optuna.distributions.FloatDistribution(0.0, 0.5),
        }
    )  # RUNNING in the storage, as a `kill -9` mid-trial leaves it
    assert study.read_trials(copy_dir)[3].state == "interrupted"  # no process holds the study
    result = run_study(recipe, trials=4, study_dir=copy_dir)
    rows = result.trials
    assert [r.number for r in rows] == [0, 1, 2, 3, 4]
    assert rows[3].state == "interrupted" and rows[4].params == left.params
    assert rows[4].state in ("complete", "pruned")


def test_a_combination_the_recipe_refuses_fails_that_trial_with_the_reason(optuna, tmp_path):
    space = {"model.embed_dim": {"choices": [8, 16]}}
    recipe = write_recipe(tmp_path, {"space": space})
    data = yaml.safe_load(recipe.read_text())
    data["model"].update(tie_weights=True, output_from="sum", embed_dim=16)
    recipe.write_text(yaml.safe_dump(data))
    result = run_study(
        recipe, trials=1, study_dir=tmp_path / "s", first_params=[{"model.embed_dim": 8}]
    )
    (row,) = result.trials
    assert row.state == "failed" and "output_from 'sum'" in row.reason
    assert row.run is None and result.best is None and not (tmp_path / "s" / "best.yaml").exists()


def test_first_params_must_lie_in_the_space(optuna, tmp_path):
    recipe = write_recipe(tmp_path, {"space": SPACE})
    with pytest.raises(ConfigError, match="outside tune.space.train.optimizer.lr"):
        run_study(recipe, trials=1, first_params=[{"train.optimizer.lr": 1.0}])
    with pytest.raises(ConfigError, match="does not search"):
        run_study(recipe, trials=1, first_params=[{"train.bptt": 8}])
    assert not (tmp_path / "runs").exists()


def test_a_recipe_without_a_tune_block_is_refused(optuna, tmp_path):
    recipe = write_recipe(tmp_path, {"space": SPACE})
    data = yaml.safe_load(recipe.read_text())
    del data["tune"]
    recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="no `tune:` block"):
        run_study(recipe, trials=1)


# ---------------------------------------------------------------- train ignores `tune:`


def test_train_ignores_the_tune_block_and_resume_does_not_see_it(tmp_path):
    from lstmlab.train import fit

    recipe = write_recipe(tmp_path, {"space": SPACE}, max_steps=1, eval_every=1)
    fit(load_recipe(recipe), tmp_path / "run")
    assert "tune" not in yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    other_space = ["tune.space={model.dropout.output: {low: 0.0, high: 0.3}}"]
    events: list[dict] = []
    cfg = load_recipe(recipe, ["train.max_steps=2", *other_space])
    fit(cfg, tmp_path / "run", resume=True, on_event=events.append)
    (resumed,) = [e for e in events if e["kind"] == "resume"]
    assert resumed["changed"] == ["train.max_steps"]


# ---------------------------------------------------------------- the `tune:` block at load


def _with_tune(tune: dict) -> dict:
    data = copy.deepcopy(TINY_RECIPE)
    data["model"]["cell"] = {"kind": "mogrifier", "hidden_dim": 16, "rounds": 4, "rank": 4}
    data["tune"] = tune
    return data


def test_the_documented_example_space_validates(optuna):
    space = {
        "train.optimizer.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
        "model.dropout.hidden": {"low": 0.0, "high": 0.5},
        "model.cell.rounds": {"choices": [3, 4, 5, 6]},
        "model.cell.rank": {"low": 8, "high": 64, "int": True},
    }
    cfg = validate(_with_tune({"metric": "valid_bpc", "space": space}))
    assert cfg.tune.space["model.cell.rounds"].choices == (3, 4, 5, 6)
    assert cfg.tune.pruner.name == "median"
    dists = distributions(optuna, cfg)
    assert isinstance(dists["model.cell.rank"], optuna.distributions.IntDistribution)
    assert dists["train.optimizer.lr"].log


@pytest.mark.parametrize(
    "space,problem",
    [
        (
            {"train.optimizer.lrr": {"low": 1e-4, "high": 1e-2}},
            "no field 'lrr' under train.optimizer",
        ),
        ({"train.optimizer.lr": {"low": 1e-2, "high": 1e-4}}, "must be below high"),
        ({"train.optimizer.lr": {"low": 0.0, "high": 1e-2, "log": True}}, "log needs low > 0"),
        ({"train.optimizer.lr": {"low": 0.0, "high": 1e-2}}, "low 0.0 is refused"),
        ({"train.optimizer.lr": {"choices": []}}, "at least 1 item"),
        ({"train.optimizer": {"choices": [1]}}, "is a section, not a value"),
        ({"train.optimizer.name": {"low": 1, "high": 2}}, "a range needs a numeric field"),
        ({"train.optimizer.name": {"choices": ["adam", "lion"]}}, "choice 'lion' is refused"),
        ({"model.cell.rank": {"low": 4.5, "high": 8}}, "whole-number low and high"),
        ({"model.slstm.hidden_dim": {"low": 8, "high": 16}}, "model.slstm is null"),
        ({"seed": {"low": 1, "high": 2, "choices": [1]}}, "not both"),
    ],
)
def test_a_bad_space_is_a_config_error_naming_the_path(space, problem):
    with pytest.raises(ConfigError) as info:
        validate(_with_tune({"space": space}), where="r.yaml")
    assert info.value.exit_code == 2
    assert problem in info.value.message and "r.yaml: tune.space." in info.value.message
