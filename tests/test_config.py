"""Recipes: strict schema, overrides, one-line errors naming the key and the file; every packaged recipe validates."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from lstmlab.cells.configs import CELL_CONFIGS, CELL_KINDS
from lstmlab.cli.app import app
from lstmlab.config import (
    DropoutConfig,
    DynamicEvalConfig,
    ModelConfig,
    Reference,
    RunConfig,
    apply_overrides,
    load_recipe,
    load_yaml,
    parse_override,
    validate,
)
from lstmlab.errors import ConfigError
from lstmlab.model import build_model

from support import REPO, TINY_RECIPE

RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_every_packaged_recipe_validates_and_names_its_source(path):
    cfg = load_recipe(path)
    assert cfg.reference is not None and cfg.reference.source
    assert (
        path.parent.name in {"tiny", "small", "ptb", "enwik8", "mixed"}
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


# ---------------------------------------------------------------- descriptions as data


def _schema_models(model: type[BaseModel], seen: set) -> None:
    if model in seen:
        return
    seen.add(model)
    for info in model.model_fields.values():
        for sub in _models_in(info.annotation):
            _schema_models(sub, seen)


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def test_every_field_of_the_schema_has_a_description():
    models: set = set()
    _schema_models(RunConfig, models)
    assert set(CELL_CONFIGS) <= models  # the walk reached every union member
    assert {DropoutConfig, DynamicEvalConfig, Reference} <= models
    missing = [
        f"{m.__name__}.{name}"
        for m in models
        for name, info in m.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert not missing, missing
    assert all((m.__doc__ or "").strip() for m in models), "every section has a docstring"


# ---------------------------------------------------------------- cross-field rules at load


def _tiny(kind: str) -> Path:
    return REPO / "recipes" / "tiny" / f"{kind}.yaml"


# The tiny recipes size their width from model.params at train time; the width rules are
# checked at load when the width is written, as here.
FIXED_WIDTH = ["model.params=null", "model.cell.hidden_dim=256"]


CROSS_FIELD = [
    (
        "mlstm",
        ["model.cell.num_heads=5"],
        "model: cell.num_heads 5 does not divide the mlstm inner width 512",
    ),
    ("mlstm", ["model.cell.proj_factor=1.5", "model.cell.num_heads=5"], "inner width 384"),
    (
        "slstm",
        ["model.cell.num_heads=3"],
        "model: cell.num_heads 3 does not divide the slstm width 256",
    ),
    ("mlstm", ["model.dropout.weight=0.1"], "model: mlstm has no recurrent weight matrix"),
    (
        "slstm",
        ["model.tie_weights=true", "model.embed_dim=30"],
        "cell.num_heads 4 does not divide the slstm width 30; pick a divisor, e.g. 4 "
        "(layer 1 is embed_dim = 30 wide: tie_weights)",
    ),
    (
        "mlstm",
        [
            "model.tie_weights=true",
            "model.embed_dim=32",
            "model.cell.proj_factor=1.0",
            "model.cell.num_heads=128",
        ],
        "cell.num_heads 128 does not divide the mlstm inner width 64",
    ),
    (
        "mlstm",
        ["model.slstm_at=[1]", "model.slstm={kind: slstm, hidden_dim: 256, num_heads: 5}"],
        "model: slstm.num_heads 5 does not divide the slstm width 256",
    ),
    (
        "mlstm",
        ["model.slstm_at=[1]", "model.slstm={kind: slstm, hidden_dim: 128}"],
        "model: slstm.hidden_dim must equal cell.hidden_dim",
    ),
    ("mlstm", ["model.slstm_at=[1]"], "model: slstm_at names sLSTM layers: set model.slstm"),
    ("mlstm", ["model.slstm_at=xLSTM[1:2]"], "needs num_layers to be a multiple of 3"),
    ("mlstm", ["model.cell.proj_factor=1e300"], "model.cell.proj_factor"),
]


@pytest.mark.parametrize("kind,overrides,needle", CROSS_FIELD)
def test_cross_field_rules_fail_in_load_recipe(kind, overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_recipe(_tiny(kind), FIXED_WIDTH + overrides)
    assert needle in err.value.message and err.value.exit_code == 2
    assert "Value error" not in err.value.message


@pytest.mark.parametrize("kind,overrides,needle", CROSS_FIELD)
def test_cross_field_rules_fail_train_dry_run_with_exit_2(kind, overrides, needle):
    args = ["train", str(_tiny(kind)), "--dry-run"]
    for text in FIXED_WIDTH + overrides:
        args += ["--set", text]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert needle in " ".join(result.output.split())  # rich may wrap the line


def test_each_problem_is_one_line_of_the_message():
    with pytest.raises(ConfigError) as err:
        load_recipe(
            _tiny("mlstm"),
            FIXED_WIDTH
            + ["model.tie_weights=true", "model.embed_dim=100", "model.cell.num_heads=512"]
            + ["model.dropout.weight=0.1"],
        )
    lines = err.value.message.splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith(f"{_tiny('mlstm')}: model: ") for line in lines)
    assert "mlstm has no recurrent weight matrix" in lines[0]
    assert "cell.num_heads 512 does not divide the mlstm inner width 256" in lines[1]
    assert "(layer 1 is embed_dim = 100 wide: tie_weights)" in lines[1]


def test_weight_dropout_stays_allowed_where_a_recurrent_matrix_exists():
    for kind in ("lstm", "mogrifier", "multiplicative", "slstm"):
        assert load_recipe(_tiny(kind), ["model.dropout.weight=0.2"]).model.dropout.weight == 0.2


def _model(kind, hidden, heads, proj, embed, layers, tie, weight):
    cell = {"kind": kind, "hidden_dim": hidden}
    if kind in ("mlstm", "slstm"):
        cell["num_heads"] = heads
    if kind == "mlstm":
        cell["proj_factor"] = proj
    return {
        "embed_dim": embed,
        "num_layers": layers,
        "tie_weights": tie,
        "cell": cell,
        "dropout": {"weight": weight},
    }


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(CELL_KINDS),
    hidden=st.integers(1, 40),
    heads=st.integers(1, 12),
    proj=st.sampled_from([0.5, 1.0, 1.3, 2.0]),
    embed=st.integers(1, 40),
    layers=st.integers(1, 3),
    tie=st.booleans(),
    weight=st.sampled_from([0.0, 0.3]),
)
def test_a_config_validates_exactly_when_the_model_builds(
    kind, hidden, heads, proj, embed, layers, tie, weight
):
    """Validation is neither laxer nor stricter than the constructors it stands in for."""
    data = _model(kind, hidden, heads, proj, embed, layers, tie, weight)
    try:
        cfg = ModelConfig.model_validate(data)
    except ValidationError:
        cfg = None
    # The same values, unvalidated, straight into the constructors (shapes only, on meta).
    cell_cls = next(c for c in CELL_CONFIGS if c.model_fields["kind"].default == kind)
    raw = ModelConfig.model_construct(
        **{
            **data,
            "cell": cell_cls.model_construct(**data["cell"]),
            "dropout": DropoutConfig(weight=weight),
        }
    )
    try:
        with torch.device("meta"):
            build_model(raw, 7)
        built = True
    except (ConfigError, ValueError):
        built = False
    assert (cfg is not None) == built, (data, cfg)


# ---------------------------------------------------------------- YAML strictness


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_duplicate_key_names_the_key_and_its_lines(tmp_path):
    text = yaml.safe_dump(TINY_RECIPE, sort_keys=False) + "seed: 3\n"
    first = 1 + text.splitlines().index("seed: 0")
    with pytest.raises(ConfigError) as err:
        load_recipe(_write(tmp_path, text))
    assert f"'seed' appears twice (lines {first} and {len(text.splitlines())})" in str(err.value)
    assert err.value.exit_code == 2


def test_a_duplicate_key_in_a_nested_flow_mapping(tmp_path):
    text = "model:\n  embed_dim: 8\n  cell: {kind: lstm, hidden_dim: 16,\n    hidden_dim: 3}\n"
    with pytest.raises(ConfigError, match=r"'hidden_dim' appears twice \(lines 3 and 4\)"):
        load_recipe(_write(tmp_path, text))
    with pytest.raises(ConfigError, match="'lr' appears twice"):
        load_recipe(_write(tmp_path, "train: {optimizer: {lr: 1.0, lr: 2.0}}\n"))


def test_merge_keys_may_still_be_overridden(tmp_path):
    text = "base: &b {x: 1}\nother:\n  <<: *b\n  x: 2\n"
    assert load_yaml(text)["other"] == {"x": 2}


def test_an_exponent_without_a_dot_is_a_float(tmp_path):
    text = yaml.safe_dump(TINY_RECIPE).replace("lr: 0.01", "lr: 3e-4")
    assert load_recipe(_write(tmp_path, text)).train.optimizer.lr == 3e-4
    assert load_yaml("a: 1e3\nb: 12\nc: 1.5\nd: e5") == {"a": 1000.0, "b": 12, "c": 1.5, "d": "e5"}


def test_an_int_is_accepted_where_a_float_belongs(tmp_path):
    cfg = load_recipe(_write(tmp_path, yaml.safe_dump(TINY_RECIPE)), ["train.optimizer.lr=1"])
    assert cfg.train.optimizer.lr == 1.0 and isinstance(cfg.train.optimizer.lr, float)


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.batch_size=true", "train.batch_size"),
        ("model.cell.hidden_dim=false", "model.cell.hidden_dim"),
        ("train.optimizer.lr=true", "train.optimizer.lr"),
        ("model.dropout.hidden=yes", "model.dropout.hidden"),
        ("train.bptt=16.0", "train.bptt"),
        ("seed=-1", "seed"),
        (f"seed={2**63}", "seed"),
        (f"train.batch_size={2**31}", "train.batch_size"),
        (f"model.embed_dim={2**64}", "model.embed_dim"),
        (f"train.max_steps={2**63}", "train.max_steps"),
        ("train.optimizer.lr=nan", "train.optimizer.lr"),
        ("train.optimizer.lr=inf", "train.optimizer.lr"),
        ("train.optimizer.lr=.inf", "train.optimizer.lr"),
        ("train.optimizer.lr=-.inf", "train.optimizer.lr"),
        ("train.optimizer.lr=1e999", "train.optimizer.lr"),
    ],
)
def test_bools_huge_and_non_finite_numbers_are_refused(tmp_path, override, key):
    path = _write(tmp_path, yaml.safe_dump(TINY_RECIPE))
    with pytest.raises(ConfigError) as err:
        load_recipe(path, [override])
    assert f"{path}: {key}: " in err.value.message and err.value.exit_code == 2
    result = CliRunner().invoke(app, ["train", str(path), "--dry-run", "--set", override])
    assert result.exit_code == 2 and "error:" in result.output, result.output


def test_a_bool_in_the_yaml_file_is_refused(tmp_path):
    text = yaml.safe_dump(TINY_RECIPE).replace("hidden_dim: 16", "hidden_dim: true")
    with pytest.raises(ConfigError, match="model.cell.hidden_dim: Input should be a valid integer"):
        load_recipe(_write(tmp_path, text))


@pytest.mark.parametrize("value", ["true", "1.0", "2"])
def test_schema_version_is_the_integer_1(tmp_path, value):
    path = _write(tmp_path, yaml.safe_dump(TINY_RECIPE))
    with pytest.raises(ConfigError, match="schema_version"):
        load_recipe(path, [f"schema_version={value}"])


def test_a_plain_union_does_not_name_its_members_in_the_location(tmp_path):
    path = _write(tmp_path, yaml.safe_dump(TINY_RECIPE))
    with pytest.raises(ConfigError) as err:
        load_recipe(path, ["model.slstm_at=[true]"])
    assert err.value.message.splitlines() == [
        f"{path}: model.slstm_at.0: Input should be a valid integer",
        f"{path}: model.slstm_at: Input should be a valid string",
    ]


def test_the_largest_seed_is_accepted(tmp_path):
    path = _write(tmp_path, yaml.safe_dump(TINY_RECIPE))
    assert load_recipe(path, [f"seed={2**63 - 1}"]).seed == 2**63 - 1


def test_error_locations_hide_the_union_tag_but_not_a_user_key(tmp_path):
    path = _write(tmp_path, yaml.safe_dump(TINY_RECIPE))
    with pytest.raises(ConfigError) as err:
        load_recipe(path, ["model.cell.hidden_dim=0", "model.lstm=3", "model.cell.lstm=1"])
    message = err.value.message
    assert f"{path}: model.cell.hidden_dim: " in message
    assert f"{path}: model.lstm: unknown key" in message
    assert f"{path}: model.cell.lstm: unknown key" in message


@pytest.mark.parametrize("kind", ["lstm", "mogrifier", "multiplicative"])
def test_a_forget_bias_float32_cannot_hold_is_refused(kind):
    with pytest.raises(ConfigError, match="model.cell.forget_bias: Input should be less than"):
        load_recipe(_tiny(kind), ["model.cell.forget_bias=1e39"])
    assert load_recipe(_tiny(kind), ["model.cell.forget_bias=-2.5"]).model.cell.forget_bias == -2.5
