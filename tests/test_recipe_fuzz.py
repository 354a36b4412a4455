"""Property tests: any YAML document and any override string gives a valid config or a one-line ConfigError.

Never a traceback: through the library (`load_recipe`) and through the CLI
(`lstmlab train RECIPE --dry-run`, exit code 0 or 2).
"""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
