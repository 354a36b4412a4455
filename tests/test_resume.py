"""Resume rules: the recipe a run continues with, and what it may change."""

from __future__ import annotations

import pytest
import yaml

from lstmlab.config import apply_overrides, validate
from lstmlab.errors import ConfigError, UsageError
from lstmlab.resume import FIXED_ON_RESUME, resume_changes, resume_config
from lstmlab.train import fit

from support import TINY_RECIPE


def test_changes_are_listed_and_fixed_fields_refused(tmp_path):
    stored = validate(TINY_RECIPE).to_dict()
    cfg = validate(apply_overrides(TINY_RECIPE, ["train.optimizer.lr=0.5", "train.max_steps=9"]))
    assert resume_changes(cfg, stored, tmp_path) == ["train.max_steps", "train.optimizer.lr"]
    for override in ("seed=3", "train.batch_size=8", "data.corpus=other"):
        with pytest.raises(ConfigError, match=override.split("=")[0]):
            resume_changes(validate(apply_overrides(TINY_RECIPE, [override])), stored, tmp_path)
    assert "model" in FIXED_ON_RESUME


def test_fields_added_since_the_checkpoint_are_no_change_at_their_defaults(tmp_path):
    cfg = validate(apply_overrides(TINY_RECIPE, ["model.cell.kind=mogrifier"]))
    stored = cfg.to_dict()
    del stored["model"]["cell"]["factor_init"]  # written before these fields existed
    del stored["train"]["ar_alpha"]
    assert resume_changes(cfg, stored, tmp_path) == []
    with pytest.raises(ConfigError, match="model.cell.factor_init"):
        resume_changes(
            validate(apply_overrides(stored, ["model.cell.rank=2", "model.cell.factor_init=lamb"])),
            stored,
            tmp_path,
        )


def test_resume_config_reads_the_run_and_checks_a_given_recipe(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(UsageError, match="not a run folder"):
        resume_config(run)
    fit(validate(apply_overrides(TINY_RECIPE, ["train.max_steps=2"])), run)
    cfg = resume_config(run, None, ["train.max_steps=4"])
    assert cfg.train.max_steps == 4
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(apply_overrides(TINY_RECIPE, ["model.cell.hidden_dim=32"])))
    with pytest.raises(ConfigError, match="model.cell.hidden_dim"):
        resume_config(run, other)
    (run / "checkpoints" / "last.pt").unlink()
    with pytest.raises(UsageError, match="no checkpoints/last.pt"):
        resume_config(run)
