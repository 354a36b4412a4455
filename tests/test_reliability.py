"""A training run is never lost: signals, SIGKILL at any moment (mid-checkpoint too), full disks.

These tests run `python -m lstmlab train` as a real subprocess and interrupt it
the way a user or a cluster scheduler would.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from lstmlab import runs
from lstmlab.checkpoint import load_checkpoint
from lstmlab.cli.app import app
from lstmlab.config import apply_overrides

from support import TINY_RECIPE

BUDGET = 40


def _recipe(tmp_path: Path, *overrides: str) -> Path:
    data = apply_overrides(
        TINY_RECIPE,
        [
            f"train.max_steps={BUDGET}",
            "train.checkpoint_every=1",
            "train.eval_every=10",
            *overrides,
        ],
    )
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "lstmlab", "train", *map(str, args), "--device", "cpu"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_training(run: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the run has logged a training step (imports and set-up are done)."""
    deadline = time.monotonic() + timeout
    metrics = run / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.is_file() and metrics.stat().st_size > 0:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError("training did not start in time")


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_last_and_prints_the_resume_command(tiny_corpus, tmp_path, signum, code):
    run = tmp_path / "run"
    proc = _start(
        [
            _recipe(tmp_path, "train.max_steps=100000", "train.checkpoint_every=null"),
            "--run-dir",
            run,
        ],
        tmp_path,
    )
    _wait_for_training(run, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"lstmlab train --resume {run}" in err.replace("\n", "") and "Traceback" not in err
    assert "stopping after the current step" in err  # the first signal is acknowledged at once
    step = load_checkpoint(runs.checkpoint_path(run, "last"))["train_state"]["step"]
    assert step >= 1
    resumed = _start(["--resume", run, "--set", f"train.max_steps={step + 3}"], tmp_path)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert load_checkpoint(runs.checkpoint_path(run, "last"))["train_state"]["step"] == step + 3


def test_second_ctrl_c_exits_at_once_without_damage(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    proc = _start([_recipe(tmp_path, "train.max_steps=100000"), "--run-dir", run], tmp_path)
    _wait_for_training(run, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert load_checkpoint(runs.checkpoint_path(run, "last"))["train_state"]["step"] >= 1


def test_sigkill_at_random_moments_then_resume_reaches_the_budget(tiny_corpus, tmp_path):
    """Kill -9 repeatedly (saves happen every step, so kills land mid-write too); nothing is lost."""
    rng = random.Random(1234)
    run = tmp_path / "run"
    recipe = _recipe(tmp_path)
    kills, steps_seen = 0, []
    for _ in range(5):
        resume = runs.checkpoint_path(run, "last").is_file()
        args = ["--resume", run] if resume else [recipe, "--run-dir", run, "--force"]
        proc = _start(args, tmp_path)
        _wait_for_training(run, proc)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate(timeout=60)
        last = runs.checkpoint_path(run, "last")
        if last.is_file():
            steps_seen.append(
                load_checkpoint(last)["train_state"]["step"]
            )  # loadable after every kill
    assert kills >= 3
    assert steps_seen == sorted(steps_seen)  # progress is never lost
    proc = _start(["--resume", run], tmp_path)
    out, err = proc.communicate(timeout=120)
    if steps_seen and steps_seen[-1] == BUDGET:  # the last kill landed after the final save
        assert proc.returncode == 2 and "already reached its budget" in err, err
    else:
        assert proc.returncode == 0, err
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert records[-1]["kind"] == "end"
        assert not list((run / "checkpoints").glob(".*.tmp"))  # stale temporaries were cleaned
    final = load_checkpoint(runs.checkpoint_path(run, "last"))
    assert final["train_state"]["step"] == BUDGET
    assert all(torch.isfinite(t).all() for t in final["model"].values())


def _cli_run(runner: CliRunner, recipe: Path, run: Path, *, steps: int) -> Path:
    """Train `recipe` for `steps` steps into `run` through the CLI, as a user would."""
    args = ["train", str(recipe), "--run-dir", str(run), "--set", f"train.max_steps={steps}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


def test_full_disk_while_checkpointing_fails_cleanly(tiny_recipe, tmp_path, monkeypatch):
    runner = CliRunner()
    run = _cli_run(runner, tiny_recipe, tmp_path / "run", steps=4)
    before = load_checkpoint(runs.checkpoint_path(run, "last"))

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", no_space)
        result = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.max_steps=8"])
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert "Traceback" not in result.output and "intact" in result.output
    after = load_checkpoint(runs.checkpoint_path(run, "last"))
    assert after["train_state"] == before["train_state"]
    again = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.max_steps=8"])
    assert again.exit_code == 0, again.output


def test_altered_checkpoint_and_corpus_are_named(tiny_recipe, tiny_corpus, tmp_path):
    runner = CliRunner()
    run = _cli_run(runner, tiny_recipe, tmp_path / "run", steps=2)
    ckpt = runs.checkpoint_path(run, "best")
    payload = load_checkpoint(ckpt)
    payload["model"]["embedding.weight"][0, 0] += (
        1.0  # a silent bit-rot, re-saved without a new checksum
    )
    payload["sha256"] = "0" * 64
    torch.save(payload, ckpt)
    result = runner.invoke(app, ["eval", str(ckpt)])
    assert (
        result.exit_code == 1
        and "fails its checksum" in result.output
        and "Traceback" not in result.output
    )

    train_bin = tiny_corpus.path / "train.bin"
    data = bytearray(train_bin.read_bytes())
    data[10] ^= 0x01
    train_bin.write_bytes(bytes(data))
    result = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.max_steps=4"])
    assert result.exit_code == 1 and "train.bin" in result.output and "checksum" in result.output


def test_one_writer_per_run_folder(tiny_corpus, tmp_path):
    """Two real processes: the second train/--resume/--force on a live run is refused by name."""
    run = tmp_path / "runs" / "x"
    recipe = _recipe(tmp_path, "train.max_steps=100000", "train.checkpoint_every=5")
    first = _start([recipe, "--run-dir", run], tmp_path)
    try:
        _wait_for_training(run, first)
        while not runs.checkpoint_path(run, "last").is_file():
            time.sleep(0.05)
        for args in ([recipe, "--run-dir", run, "--force"], ["--resume", run]):
            second = _start(args, tmp_path)
            out, err = second.communicate(timeout=120)
            assert second.returncode == 1, err
            assert f"is being trained by pid {first.pid} on host" in err and "Traceback" not in err
        result = CliRunner().invoke(app, ["compare", str(run), "--format", "csv"])
        assert ",running," in result.output
    finally:
        first.kill()
        first.wait()
    assert ",crashed," in CliRunner().invoke(app, ["compare", str(run), "--format", "csv"]).output
    resumed = _start(["--resume", run, "--set", "train.max_steps=100000"], tmp_path)
    deadline = time.monotonic() + 120
    while '"kind": "resume"' not in (run / "metrics.jsonl").read_text():
        assert time.monotonic() < deadline and resumed.poll() is None, resumed.communicate()
        time.sleep(0.05)
    time.sleep(1.0)  # past the start, into the loop's signal handling
    resumed.send_signal(signal.SIGINT)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 130 and f"pid {first.pid}" in err  # the takeover is said
    assert ",stopped," in CliRunner().invoke(app, ["compare", str(run), "--format", "csv"]).output


def test_ctrl_c_while_importing_is_one_line(tmp_path):
    """Ctrl-C at several moments of start-up (imports, then the command): always one line, 130."""
    interrupted = 0
    for delay in [0.1 * k for k in range(1, 16)]:  # through the imports torch makes lazily
        proc = subprocess.Popen(
            [sys.executable, "-m", "lstmlab", "cells"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue  # it finished first
        interrupted += 1
        assert proc.returncode == 130 and "Traceback" not in err, (delay, err)
        assert err.startswith("error: ") and "hint: " in err, (delay, err)
    assert interrupted  # the early signals, at least, land while it starts


_LIBRARY_TURNS_CTRL_C_INTO = """
import os, signal, sys
import typer
from lstmlab.cli.common import handle_errors

@handle_errors
def command() -> None:
    try:  # a library's import that a Ctrl-C tears, as numpy's does
        os.kill(os.getpid(), signal.SIGINT)
    except KeyboardInterrupt:
        raise {error}("cannot load module more than once per process") from None

typer.run(command)
"""


# a library whose import carries on past a Ctrl-C, as a C extension's init would
_SWALLOWING_IMPORT = (
    "import os, signal\n"
    "try:\n"
    "    os.kill(os.getpid(), signal.SIGINT)\n"
    "except KeyboardInterrupt:\n"
    "    pass\n"
)


def _run_script(script: str, folder) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter in `folder`, which is also on its import path."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(folder)},
    )


@pytest.mark.parametrize("error", ["ImportError", "RecursionError", "RuntimeError"])
def test_ctrl_c_a_library_turned_into_another_error_is_one_line(tmp_path, error):
    """A Ctrl-C is reported as the interrupt even when a library re-raised it as something else."""
    script = _LIBRARY_TURNS_CTRL_C_INTO.format(error=error)
    proc = _run_script(script, tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.startswith("error: interrupted by Ctrl-C"), proc.stderr
    assert "Traceback" not in proc.stderr and "hint: " in proc.stderr


def test_ctrl_c_during_a_commands_import_ends_it_at_once(tmp_path):
    """Raising inside an import can abort from C++ (torch) or tear a module (numpy): exit at once."""
    (tmp_path / "slow_library.py").write_text(
        _SWALLOWING_IMPORT + "open('imported', 'w').write('the import ran on after the Ctrl-C')\n"
    )
    script = _LIBRARY_TURNS_CTRL_C_INTO.replace(
        "    try:", "    import slow_library\n    try:", 1
    ).format(error="ImportError")
    proc = _run_script(script, tmp_path)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: interrupted by Ctrl-C") and "hint: " in proc.stderr
    assert not (tmp_path / "imported").exists()


@pytest.mark.parametrize("saved", [False, True])
def test_ctrl_c_during_an_import_lets_go_of_the_run_it_holds(tmp_path, saved):
    """The at-once exit still does what an interrupted `fit` does with its lock: a fresh start
    that saved nothing is undone, a run with a checkpoint is released and kept."""
    (tmp_path / "slow_library.py").write_text(_SWALLOWING_IMPORT)
    claim = (
        "from lstmlab import runs\n"
        "    lock = runs.claim_run_dir('run', force=False, resume=False)\n"
        "    runs.checkpoint_path(lock.run_dir, 'last').parent.mkdir(exist_ok=True)\n"
        f"    if {saved}: runs.checkpoint_path(lock.run_dir, 'last').write_bytes(b'weights')\n"
        "    import slow_library\n"
        "    try:"
    )
    script = _LIBRARY_TURNS_CTRL_C_INTO.replace("try:", claim, 1).format(error="ImportError")
    proc = _run_script(script, tmp_path)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    run = tmp_path / "run"
    if saved:
        assert (
            not runs.has_lock(run) and runs.checkpoint_path(run, "last").read_bytes() == b"weights"
        )
    else:
        assert not run.exists()  # the fresh start is undone, so a retry needs no --force


def test_an_error_without_ctrl_c_is_still_a_traceback(tmp_path):
    """Only an interrupt is reinterpreted: a bug with no Ctrl-C behind it still shows its traceback."""
    script = _LIBRARY_TURNS_CTRL_C_INTO.format(error="ImportError").replace(
        "os.kill(os.getpid(), signal.SIGINT)", "raise KeyboardInterrupt"
    )
    proc = _run_script(script, tmp_path)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "ImportError: cannot load module" in proc.stderr


def test_second_ctrl_c_message_is_true_without_a_checkpoint(tmp_path):
    from lstmlab.cli.train import second_interrupt

    run = tmp_path / "run"
    assert "before any checkpoint was saved" in second_interrupt(run).message
    runs.checkpoint_path(run, "last").parent.mkdir(parents=True)
    runs.checkpoint_path(run, "last").write_bytes(b"x")
    assert "checkpoint is intact" in second_interrupt(run).message
