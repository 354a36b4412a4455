"""`lstmlab tune` and `lstmlab compare STUDY`: one-line errors, Ctrl-C, the trials table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

from lstmlab.cli.app import app

from tune_study import PRUNING, SPACE, three_trials_study, write_recipe

runner = CliRunner()


@pytest.fixture
def optuna():
    return pytest.importorskip("optuna", reason="the tune extra is not installed")


@pytest.fixture
def three_trials(optuna, tmp_path_factory):
    return three_trials_study(tmp_path_factory)


def _one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: "), result.output
    return result.output


@pytest.mark.parametrize(
    "tune,expected",
    [
        ({"space": {"train.optimizer.lrr": {"low": 1e-4, "high": 1e-2}}}, "train.optimizer.lrr"),
        ({"space": {"train.optimizer.lr": {"low": 1e-2, "high": 1e-4}}}, "must be below high"),
        ({"space": {"seed": {"low": 1}}}, "give a range (low and high) or choices"),
        ({"space": {}}, "tune.space: Dictionary should have at least 1 item"),
        ({"space": SPACE, "pruner": {"name": "hyperband"}}, "tune.pruner.name"),
    ],
)
def test_a_bad_tune_block_is_a_one_line_error_with_exit_2(optuna, tmp_path, tune, expected):
    recipe = write_recipe(tmp_path, tune)
    result = runner.invoke(app, ["tune", str(recipe), "--trials", "2"], env={"COLUMNS": "300"})
    assert expected in _one_line_error(result)
    assert not (tmp_path / "runs").exists()  # refused before a study folder is made


def test_a_recipe_without_tune_and_a_foreign_study_dir_are_refused(optuna, tmp_path, tiny_recipe):
    result = runner.invoke(app, ["tune", str(tiny_recipe), "--trials", "1"])
    assert "no `tune:` block" in _one_line_error(result)
    recipe = write_recipe(tmp_path, {"space": SPACE})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    args = ["tune", str(recipe), "--trials", "1", "--study-dir", str(tmp_path / "mine")]
    assert "not an lstmlab study folder" in _one_line_error(runner.invoke(app, args))
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_without_optuna_tune_names_the_extra(tmp_path, monkeypatch):
    recipe = write_recipe(tmp_path, {"space": SPACE})
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    result = runner.invoke(app, ["tune", str(recipe), "--trials", "1"])
    text = _one_line_error(result)
    assert "lstmlab tune needs the optuna package" in text
    assert "pip install 'lstmlab[tune]'" in text


def test_a_study_continued_with_another_recipe_is_refused(three_trials, tmp_path):
    recipe, study_dir = three_trials
    args = ["tune", str(recipe), "--trials", "3", "--study-dir", str(study_dir)]
    result = runner.invoke(app, [*args, "--set", "train.bptt=8"], env={"COLUMNS": "300"})
    assert "differs at: train.bptt" in _one_line_error(result)
    result = runner.invoke(app, [*args, "--seed", "5"], env={"COLUMNS": "300"})
    assert "started with --seed 0, not 5" in _one_line_error(result)
    done = runner.invoke(app, args, env={"COLUMNS": "300"})  # 3 are done: nothing trains
    assert done.exit_code == 0, done.output
    assert "best trial" in done.output and "best.yaml" in done.output


# ---------------------------------------------------------------- compare STUDY


def test_compare_shows_a_studys_trials_in_every_format(three_trials):
    _recipe, study_dir = three_trials
    table = runner.invoke(app, ["compare", str(study_dir)], env={"COLUMNS": "300"})
    assert table.exit_code == 0, table.output
    for text in ("trial", "state", "train.optimizer.lr", "valid bpc", "pruned", "complete"):
        assert text in table.output
    markdown = runner.invoke(app, ["compare", str(study_dir), "-f", "markdown"]).output
    assert markdown.startswith("| trial | state | train.optimizer.lr | model.dropout.hidden |")
    assert "| 1 | pruned | 1e-06 | 0 |" in markdown and "| 128 |" in markdown
    assert markdown.count("**") >= 2  # the best trial in bold
    rows = json.loads(runner.invoke(app, ["compare", str(study_dir), "-f", "json"]).output)
    assert [r["state"] for r in rows[:2]] == ["complete", "pruned"] and rows[1]["tokens"] == 128
    assert sum(r["best"] for r in rows) == 1
    csv = runner.invoke(app, ["compare", str(study_dir), "-f", "csv"]).output.splitlines()
    assert csv[0] == (
        "trial,state,train.optimizer.lr,model.dropout.hidden,valid_bpc,tokens,best,run,reason"
    )
    assert len(csv) == 4


def test_compare_keeps_run_folders_apart_from_a_study(three_trials):
    _recipe, study_dir = three_trials
    runs = runner.invoke(app, ["compare", str(study_dir / "trial-0000"), "-f", "csv"])
    assert runs.exit_code == 0 and runs.output.startswith("name,state,corpus")
    both = runner.invoke(app, ["compare", str(study_dir), str(study_dir / "trial-0000")])
    assert "compared on its own" in _one_line_error(both)


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_mid_trial_exits_130_and_the_trial_runs_again_later(optuna, tmp_path):
    recipe = write_recipe(tmp_path, PRUNING, max_steps=100_000, eval_every=2)
    study_dir = tmp_path / "study"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstmlab", "tune", str(recipe), "--trials", "2"]
        + ["--study-dir", str(study_dir), "--device", "cpu"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = study_dir / "trial-0000" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and '"valid"' in metrics.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "error: tuning stopped by a signal during trial 0" in err
    assert "hint: continue with the same `lstmlab tune` command" in err
    from lstmlab import study

    (row,) = study.read_trials(study_dir)
    assert row.state == "interrupted" and row.run == str(study_dir / "trial-0000")
    assert (study_dir / "trial-0000" / "checkpoints" / "last.pt").is_file()  # resumable run
    loaded = optuna.load_study(study_name="lstmlab", storage=study.storage_url(study_dir))
    waiting = loaded.get_trials(states=(optuna.trial.TrialState.WAITING,))
    queued = [t.system_attrs["fixed_params"] for t in waiting]
    assert queued == [loaded.trials[0].params]  # to run first when the study continues
    assert not (study_dir / ".lock").exists()  # the study is free for the next command
    assert yaml.safe_load((study_dir / "trial-0000" / "config.yaml").read_text())["train"]


def test_a_study_another_live_process_tunes_is_refused(three_trials, tmp_path):
    from lstmlab import runs

    recipe, study_dir = three_trials
    copy_dir = tmp_path / "busy"
    shutil.copytree(study_dir, copy_dir)
    lock = runs.lock_folder(copy_dir)  # as a running `lstmlab tune` holds it
    try:
        args = ["tune", str(recipe), "--trials", "5", "--study-dir", str(copy_dir)]
        result = runner.invoke(app, args, env={"COLUMNS": "300"})
        assert "is being trained by pid" in _one_line_error(result, code=1)
        assert not (copy_dir / "trial-0003").exists()
    finally:
        lock.release()
