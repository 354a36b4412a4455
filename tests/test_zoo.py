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
