"""Property tests: any YAML document and any override string gives a valid config or a one-line ConfigError.

Never a traceback: through the library (`load_recipe`) and through the CLI
(`lstmlab train RECIPE --dry-run`, exit code 0 or 2).
"""

from __future__ import annotations

import typing

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from lstmlab.cli.app import app
from lstmlab.config import RunConfig, apply_overrides, load_recipe
from lstmlab.errors import ConfigError

from support import TINY_RECIPE

KEYS = [
    "data",
    "model",
    "train",
    "eval",
    "corpus",
    "cell",
    "kind",
    "lstm",
    "hidden_dim",
    "embed_dim",
    "num_layers",
    "batch_size",
    "bptt",
    "optimizer",
    "lr",
    "max_steps",
    "dropout",
    "seed",
    "name",
    "schedule",
    "x",
]
PATHS = [
    "train.lr",
    "train.bptt",
    "train.optimizer.lr",
    "train.optimizer.name",
    "model.cell.kind",
    "model.cell.hidden_dim",
    "model.dropout.hidden",
    "train.max_steps",
    "train.schedule.name",
    "seed",
    "data.corpus",
    "eval.batch_size",
    "model.num_layers",
    "train.grad_clip",
    "model",
    "train",
    "nope.deeper.key",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["lstm", "adam", "cosine", "1e-3", "-1", "0", "inf", "nan", "[1, 2]", "{a: 1}"]
    ),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=5
        ),
    ),
    max_leaves=25,
)
override_strings = st.one_of(
    st.builds(
        lambda p, v: f"{p}={v}",
        st.sampled_from(PATHS),
        st.one_of(st.text(max_size=10), scalars.map(str)),
    ),
    st.text(max_size=30),
)

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _check(path, overrides=()):
    try:
        cfg = load_recipe(path, overrides)
    except ConfigError as exc:
        assert exc.exit_code == 2 and exc.message.strip()
        assert "Traceback" not in str(exc)
        return None
    assert isinstance(cfg, RunConfig)
    return cfg


@FUZZ
@given(doc=documents)
def test_random_yaml_documents(tmp_path, doc):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    _check(path)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(list(TINY_RECIPE) + KEYS), documents, max_size=6))
def test_random_sections_over_a_valid_recipe(tmp_path, doc):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({**TINY_RECIPE, **doc}), encoding="utf-8")
    _check(path)


@FUZZ
@given(overrides=st.lists(override_strings, min_size=1, max_size=4))
def test_random_overrides(tmp_path, overrides):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE), encoding="utf-8")
    _check(path, overrides)


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_files(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    _check(path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(overrides=st.lists(override_strings, min_size=1, max_size=3))
def test_cli_never_shows_a_traceback(tmp_path, overrides):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE), encoding="utf-8")
    args = ["train", str(path), "--dry-run"]
    for text in overrides:
        args += ["--set", text]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "error:" in result.output


def test_apply_overrides_never_mutates_its_input():
    before = yaml.safe_dump(TINY_RECIPE)
    apply_overrides(
        TINY_RECIPE, ["train.optimizer.lr=5", "model.cell.hidden_dim=3", "new.section=1"]
    )
    assert yaml.safe_dump(TINY_RECIPE) == before


def _number_fields(model, prefix=""):
    """(dotted path, int or float) of every number field of the schema, sections included."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = info.annotation
        for arg in typing.get_args(annotation) or (annotation,):
            base = typing.get_args(arg)[0] if typing.get_origin(arg) is typing.Annotated else arg
            if base in (int, float):
                yield path, base
                break
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _number_fields(annotation, f"{path}.")


NUMBER_TYPES = dict(_number_fields(RunConfig)) | {"model.cell.hidden_dim": int}
NUMBER_FIELDS = sorted(NUMBER_TYPES)
INT_FIELDS = sorted(p for p, t in NUMBER_TYPES.items() if t is int)


def test_the_number_field_list_is_not_empty():
    assert {"seed", "train.batch_size", "train.optimizer.lr", "model.dropout.weight"} <= set(
        NUMBER_FIELDS
    )
    assert {"seed", "train.batch_size", "model.num_layers", "eval.dynamic.segment_len"} <= set(
        INT_FIELDS
    )


@FUZZ
@given(path=st.sampled_from(NUMBER_FIELDS), value=st.sampled_from(["true", "false", "yes", "on"]))
def test_a_bool_is_never_a_number(tmp_path, path, value):
    recipe = tmp_path / "ok.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE), encoding="utf-8")
    try:
        load_recipe(recipe, [f"{path}={value}"])
    except ConfigError as exc:
        assert f": {path}: " in exc.message, exc.message
    else:
        raise AssertionError(f"{path}={value} was accepted")


@FUZZ
@given(path=st.sampled_from(INT_FIELDS), value=st.integers(2**63, 2**70))
def test_a_huge_integer_fails_at_load(tmp_path, path, value):
    """torch takes at most int64: a larger integer is refused by the recipe, never by torch."""
    recipe = tmp_path / "ok.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE), encoding="utf-8")
    try:
        load_recipe(recipe, [f"{path}={value}"])
    except ConfigError as exc:
        assert f": {path}: " in exc.message, exc.message
    else:
        raise AssertionError(f"{path}={value} was accepted")


@FUZZ
@given(
    key=st.sampled_from(KEYS),
    first=st.integers(0, 9),
    second=st.integers(0, 9),
    nested=st.booleans(),
)
def test_a_repeated_key_is_always_named(tmp_path, key, first, second, nested):
    body = f"{key}: {first}\nother: 1\n{key}: {second}\n"
    text = "model:\n" + "".join(f"  {line}\n" for line in body.splitlines()) if nested else body
    recipe = tmp_path / "dup.yaml"
    recipe.write_text(text, encoding="utf-8")
    try:
        load_recipe(recipe)
    except ConfigError as exc:
        lines = (2, 4) if nested else (1, 3)
        assert f"'{key}' appears twice (lines {lines[0]} and {lines[1]})" in exc.message
    else:
        raise AssertionError("a duplicate key was accepted")
