"""Recipes: strict schema, overrides, one-line errors naming the key and the file; every packaged recipe validates."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from lstmlab.config import apply_overrides, load_recipe, parse_override, validate
from lstmlab.errors import ConfigError

from support import REPO, TINY_RECIPE

RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_every_packaged_recipe_validates_and_names_its_source(path):
    cfg = load_recipe(path)
    assert cfg.reference is not None and cfg.reference.source
    assert (
        path.parent.name in {"tiny", "ptb", "enwik8", "mixed"}
        or path.parent.name == cfg.data.corpus
    )


def test_overrides_parse_yaml_values():
    assert parse_override("train.lr=3e-4") == (["train", "lr"], 3e-4)
    assert parse_override("model.cell.capped_input_gate=true")[1] is True
    assert parse_override("train.schedule.milestones_epochs=[1, 2]")[1] == [1, 2]
    data = apply_overrides(TINY_RECIPE, ["train.max_steps=9", "train.schedule.name=cosine"])
    cfg = validate(data)
    assert cfg.train.max_steps == 9 and cfg.train.schedule.name == "cosine"
    assert TINY_RECIPE["train"]["max_steps"] == 6  # the input is not mutated


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.lrr=1", "train.lrr: unknown key"),
        ("train.optimizer.lr=-1", "train.optimizer.lr"),
        ("train.bptt=0", "train.bptt"),
        ("model.cell.kind=gru", "model.cell"),
        ("model.dropout.hidden=1.5", "model.dropout.hidden"),
        ("train.batch_size=many", "train.batch_size"),
        ("train.optimizer.lr=.nan", "train.optimizer.lr"),
    ],
)
def test_bad_values_name_the_key_and_file(tmp_path, override, needle):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE))
    with pytest.raises(ConfigError) as err:
        load_recipe(path, [override])
    assert needle in str(err.value) and str(path) in str(err.value)
    assert err.value.exit_code == 2


def test_all_problems_reported_at_once(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE))
    with pytest.raises(ConfigError) as err:
        load_recipe(path, ["train.bptt=0", "model.num_layers=0"])
    assert "train.bptt" in err.value.message and "model.num_layers" in err.value.message


def test_a_budget_is_required():
    data = apply_overrides(TINY_RECIPE, ["train.max_steps=null"])
    with pytest.raises(ConfigError, match="budget"):
        validate(data)


@pytest.mark.parametrize(
    "content,needle", [("", "empty"), ("- a\n- b\n", "mapping"), ("a: [1,\n", "not valid YAML")]
)
def test_malformed_files(tmp_path, content, needle):
    path = tmp_path / "r.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_recipe(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="folder"):
        load_recipe(tmp_path)


@pytest.mark.parametrize("text", ["novalue", "=3", "a..b=1"])
def test_malformed_overrides(text):
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override(text)


def test_config_is_frozen():
    cfg = validate(TINY_RECIPE)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.train.bptt = 3  # type: ignore[misc]
