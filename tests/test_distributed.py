"""Data-parallel training with torchrun (gloo on CPU), mixed precision and torch.compile."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from lstmlab import runs
from lstmlab.checkpoint import load_checkpoint
from lstmlab.config import apply_overrides, validate
from lstmlab.distributed import DistContext
from lstmlab.errors import ConfigError
from lstmlab.train import fit

from support import TINY_RECIPE

NO_DROPOUT = [
    "model.dropout.hidden=0",
    "model.dropout.output=0",
    "model.dropout.weight=0",
    "model.dropout.embedding=0",
    "model.dropout.input=0",
]


def _recipe(tmp_path, *overrides):
    data = apply_overrides(
        TINY_RECIPE, ["train.max_steps=6", "train.eval_every=3", *NO_DROPOUT, *overrides]
    )
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, validate(data)


def _lstmlab(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lstmlab", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_gloo_processes_equal_one_process_then_resume_with_one(tiny_corpus, tmp_path):
    path, cfg = _recipe(tmp_path)
    single = tmp_path / "single"
    fit(cfg, single)

    ddp = tmp_path / "ddp"
    proc = _lstmlab(
        "train", path, "--run-dir", ddp, "--nproc", "2", "--device", "cpu", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 processes" in proc.stdout

    a = load_checkpoint(runs.checkpoint_path(single, "last"))
    b = load_checkpoint(runs.checkpoint_path(ddp, "last"))
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], atol=2e-5, rtol=1e-4)
    assert b["train_state"]["tokens_seen"] == a["train_state"]["tokens_seen"]  # same global batch
    assert b["hidden"][0][0].shape[0] == cfg.train.batch_size  # the full-batch state was gathered

    # one writer: each record once, only the two checkpoints, no stray temporaries
    steps = [
        json.loads(line)["step"]
        for line in (ddp / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert steps == sorted(set(steps))
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

    # the logged figures are the global batch's: equal to one process's, train and valid
    def figures(run, kind):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["bpc"]) for r in records if r["kind"] == kind]

    for kind in ("train", "valid"):
        one, two = figures(single, kind), figures(ddp, kind)
        assert [s for s, *_ in one] == [s for s, *_ in two] and one
        np.testing.assert_allclose([f[1:] for f in two], [f[1:] for f in one], rtol=2e-5)

    # a run started with 2 processes resumes with 1
    proc = _lstmlab(
        "train", "--resume", ddp, "--set", "train.max_steps=9", "--device", "cpu", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load_checkpoint(runs.checkpoint_path(ddp, "last"))["train_state"]["step"] == 9


def test_ddp_resume_with_dropout_is_bit_exact(tiny_corpus, tmp_path):
    path, _ = _recipe(tmp_path, "model.dropout.hidden=0.2", "model.dropout.weight=0.2")
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--nproc", "2", "--device", "cpu"]
    assert _lstmlab("train", path, "--run-dir", straight, *common, cwd=tmp_path).returncode == 0
    proc = _lstmlab(
        "train", path, "--run-dir", split, "--set", "train.max_steps=3", *common, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    proc = _lstmlab("train", "--resume", split, "--set", "train.max_steps=6", *common, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    a = load_checkpoint(runs.checkpoint_path(straight, "last"))["model"]
    b = load_checkpoint(runs.checkpoint_path(split, "last"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_activation_penalties_under_two_processes_equal_one_process(tiny_corpus, tmp_path):
    # Each rank's penalty is a mean over its rows; DDP averages the ranks' gradients.
    path, cfg = _recipe(tmp_path, "train.ar_alpha=2.0", "train.tar_beta=1.0")
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    fit(cfg, single)
    proc = _lstmlab(
        "train", path, "--run-dir", ddp, "--nproc", "2", "--device", "cpu", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a = load_checkpoint(runs.checkpoint_path(single, "last"))["model"]
    b = load_checkpoint(runs.checkpoint_path(ddp, "last"))["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=2e-5, rtol=1e-4)


def test_nproc_that_does_not_divide_the_batch_is_refused_before_torchrun(tiny_corpus, tmp_path):
    path, _ = _recipe(tmp_path)
    proc = _lstmlab("train", path, "--nproc", "3", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: --nproc 3 does not divide train.batch_size 4" in proc.stderr
    assert "launching" not in proc.stdout and not (tmp_path / "runs").exists()


def test_batch_must_split_evenly():
    assert DistContext(rank=1, world_size=2).rows(8) == slice(4, 8)
    with pytest.raises(ConfigError, match="does not split evenly"):
        DistContext(rank=0, world_size=3).rows(8)


def test_bf16_autocast_trains_with_float32_state(tiny_corpus, tmp_path):
    _, cfg = _recipe(tmp_path, "train.precision=bf16")
    run = tmp_path / "bf16"
    result = fit(cfg, run)
    assert np.isfinite(result.final_valid["bpc"])
    ckpt = load_checkpoint(runs.checkpoint_path(run, "last"))
    assert all(t.dtype == torch.float32 for layer in ckpt["hidden"] for t in layer)
    assert all(t.dtype == torch.float32 for t in ckpt["model"].values())


def test_fp16_needs_cuda(tiny_corpus, tmp_path):
    _, cfg = _recipe(tmp_path, "train.precision=fp16")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        fit(cfg, tmp_path / "fp16")


def test_compiled_runs_save_plain_checkpoints(tiny_corpus, tmp_path, monkeypatch):
    # the eager backend exercises the wrapping without minutes of kernel compilation on CPU
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    _, cfg = _recipe(tmp_path, "train.compile=true")
    run = tmp_path / "compiled"
    fit(cfg, run)
    keys = load_checkpoint(runs.checkpoint_path(run, "last"))["model"].keys()
    assert not any("_orig_mod" in k or k.startswith("module.") for k in keys)
    _, plain = _recipe(tmp_path)
    fit(validate(apply_overrides(plain.to_dict(), ["train.max_steps=8"])), run, resume=True)
