"""Training a list of recipes: checked first, trained in turn, one failure costs only itself."""

from __future__ import annotations

import pytest
import yaml

from lstmlab.config import apply_overrides
from lstmlab.errors import ConfigError, UsageError
from lstmlab.zoo import plan_recipes, train_recipes

from support import TINY_RECIPE


def _write(tmp_path, name, *overrides):
    path = tmp_path / "recipes" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(apply_overrides(TINY_RECIPE, ["train.max_steps=2", *overrides])))
    return path


def test_plan_checks_every_recipe_before_any_trains(tiny_corpus, tmp_path):
    good = _write(tmp_path, "good")
    bad = _write(tmp_path, "bad", "model.cell.hidden_dim=-1")
    worse = _write(tmp_path, "worse", "train.bptt=0")
    with pytest.raises(ConfigError) as err:
        plan_recipes([good, bad, worse], [], tmp_path / "runs", force=False)
    assert "bad.yaml" in err.value.message and "worse.yaml" in err.value.message
    assert not (tmp_path / "runs").exists()


def test_plan_names_runs_and_refuses_an_existing_one(tiny_corpus, tmp_path):
    a, b = _write(tmp_path, "a"), _write(tmp_path, "b")
    plan = plan_recipes([a, b], [], tmp_path / "runs", force=False)
    assert [target.name for *_, target in plan] == ["a-tiny", "b-tiny"]
    (tmp_path / "runs" / "a-tiny").mkdir(parents=True)
    (tmp_path / "runs" / "a-tiny" / "config.yaml").write_text("x")
    plan_recipes([a, b], [], tmp_path / "runs", force=False)  # never started: reused
    (tmp_path / "runs" / "a-tiny" / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    with pytest.raises(UsageError, match="already exists"):
        plan_recipes([a, b], [], tmp_path / "runs", force=False)


def test_one_failing_recipe_does_not_cost_the_others(tiny_corpus, tmp_path, monkeypatch):
    import lstmlab.zoo as zoo

    a, b = _write(tmp_path, "a"), _write(tmp_path, "b")
    plan = plan_recipes([a, b], [], tmp_path / "runs", force=False)
    real = zoo.fit

    def fit_or_fail(cfg, target, **kwargs):
        if target.name == "a-tiny":
            raise RuntimeError("boom")
        return real(cfg, target, **kwargs)

    monkeypatch.setattr(zoo, "fit", fit_or_fail)
    first, second = train_recipes(plan)
    assert first.result is None and "RuntimeError: boom" in first.error
    assert second.error is None and second.result.state.step == 2


def test_seeds_plan_one_run_per_seed(tiny_corpus, tmp_path):
    from lstmlab.zoo import parse_seeds

    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("3-5,1") == [3, 4, 5, 1]
    for bad in ("", "a", "1-x", "-1", str(2**64)):
        with pytest.raises(UsageError):
            parse_seeds(bad)
    plan = plan_recipes([_write(tmp_path, "a")], [], tmp_path / "runs", force=False, seeds=[0, 7])
    assert [(cfg.seed, target.name) for _, cfg, target in plan] == [
        (0, "a-tiny-s0"),
        (7, "a-tiny-s7"),
    ]


def test_budget_mismatch_names_each_recipe_once(tiny_corpus, tmp_path):
    from lstmlab.zoo import budget_mismatch

    steps, minutes = _write(tmp_path, "steps"), _write(tmp_path, "minutes", "train.max_minutes=1")
    plan = plan_recipes([steps, minutes], [], tmp_path / "runs", force=False, seeds=[0, 1])
    message = budget_mismatch(plan)
    assert "\n" not in message and message.count("steps.yaml") == 1
    assert "minutes.yaml: 1 min, 2 steps" in message and "steps.yaml: 2 steps" in message
    equal = ["train.max_tokens=256", "train.max_steps=null", "train.max_minutes=null"]
    assert (
        budget_mismatch(plan_recipes([steps, minutes], equal, tmp_path / "r", force=False)) is None
    )


def test_make_zoo_trains_on_equal_tokens_and_deletes_nothing(tmp_path):
    """`make -n` prints the zoo's commands without running them."""
    import shutil
    import subprocess

    from support import REPO

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")

    def commands(*args):
        out = subprocess.run(
            ["make", "-n", "-s", "zoo", f"ZOO_DIR={tmp_path}", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.replace("\\\n", " ").splitlines()  # one line per shell command

    def line_with(lines, needle):
        return next(line for line in lines if needle in line)

    by_tokens, by_time = commands(), commands("ZOO_MINUTES=2")
    assert "--set train.max_tokens=1000000 --set train.max_minutes=null" in line_with(
        by_tokens, "--seeds 0,1,2"
    )
    assert "--set train.max_minutes=2 --set train.max_tokens=null" in line_with(by_time, "--seeds")
    # the learning rate is tuned first, on its own token budget, and the winners are trained
    tune = line_with(by_tokens, "lstmlab tune")
    assert "--trials 5" in tune and f"--study-dir {tmp_path}/tune/" in tune
    assert "--set train.max_tokens=500000 --set train.max_minutes=null" in line_with(
        by_tokens, "train.max_tokens=500000"
    )
    untuned = commands("ZOO_TRIALS=0")
    assert 'if [ "0" -gt 0 ]' in "\n".join(untuned)  # ZOO_TRIALS=0 trains recipes/tiny as they are
    for lines in (by_tokens, by_time):
        line = line_with(lines, "--seeds")
        assert "train.max_steps=null" in line and "train.max_epochs=null" in line
    out = subprocess.run(
        ["make", "-n", "zoo", f"ZOO_DIR={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--force" in out and f"rm -rf {tmp_path}" not in out
