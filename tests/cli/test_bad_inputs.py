"""Every command against missing paths, empty files, folders for files, non-UTF-8 text, zero/negative numbers.

Each case must end with a non-zero exit code and exactly one `error:` line,
never a traceback.
"""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from lstmlab.cli.app import app

from support import TINY_RECIPE

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files of every bad kind, and one trained run to point commands at."""
    root = tmp_path_factory.mktemp("bad")
    (root / "empty.txt").write_bytes(b"")
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (root / "folder").mkdir()
    (root / "garbage.pt").write_bytes(b"\x00\x01not a checkpoint" * 10)
    (root / "empty.pt").write_bytes(b"")
    (root / "norun").mkdir()
    text = root / "book.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    data = root / "data"
    assert (
        runner.invoke(
            app, ["prepare", "text", str(text), "--name", "tiny", "--data-dir", str(data)]
        ).exit_code
        == 0
    )
    recipe = root / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump({**TINY_RECIPE, "data": {"corpus": "tiny", "data_dir": str(data)}})
    )
    run = root / "run"
    result = runner.invoke(
        app, ["train", str(recipe), "--run-dir", str(run), "--set", "train.max_steps=2"]
    )
    assert result.exit_code == 0, result.output
    return root


def cases():
    # (args with {root} placeholders, expected exit code)
    return [
        # prepare
        (["prepare", "text", "{root}/missing.txt"], None),
        (["prepare", "text", "{root}/empty.txt"], None),
        (["prepare", "text", "{root}/folder"], None),
        (["prepare", "text", "{root}/latin1.txt"], None),
        (["prepare", "text", "{root}/book.txt", "--fractions", "0,0.5,0.5"], None),
        (["prepare", "text", "{root}/book.txt", "--fractions", "-1,1,1"], None),
        (["prepare", "ptb", "--source", "{root}/missing"], None),
        (["prepare", "ptb", "--source", "{root}/empty.txt"], None),
        (["prepare", "ptb", "--source", "{root}/folder"], None),
        (["prepare", "enwik8", "--source", "{root}/latin1.txt"], None),
        (["prepare", "enwik8", "--source", "{root}/folder"], None),
        (["prepare", "unknown"], 2),
        # train
        (["train", "{root}/missing.yaml"], 2),
        (["train", "{root}/empty.txt"], 2),
        (["train", "{root}/folder"], 2),
        (["train", "{root}/latin1.txt"], 2),
        (["train", "{root}/tiny.yaml", "--set", "train.bptt=0"], 2),
        (["train", "{root}/tiny.yaml", "--set", "train.batch_size=-4"], 2),
        (["train", "{root}/tiny.yaml", "--set", "train.optimizer.lr=0"], 2),
        (["train", "{root}/tiny.yaml", "--set", "train.max_steps=0"], 2),
        (["train", "{root}/tiny.yaml", "--set", "model.num_layers=0"], 2),
        (["train", "{root}/tiny.yaml", "--run-dir", "{root}/empty.txt"], 2),
        (["train", "--resume", "{root}/missing"], None),
        (["train", "--resume", "{root}/folder"], None),
        (["train", "--resume", "{root}/run", "--set", "model.cell.hidden_dim=7"], 2),
        (["train", "{root}/tiny.yaml", "--device", "cuda:7"], 2),
        (["train", "{root}/tiny.yaml", "--device", "toaster"], 2),
        # eval
        (["eval", "{root}/missing"], 1),
        (["eval", "{root}/norun"], 1),
        (["eval", "{root}/garbage.pt"], 1),
        (["eval", "{root}/empty.pt"], 1),
        (["eval", "{root}/latin1.txt"], 1),
        (["eval", "{root}/run", "--batch-size", "0"], 2),
        (["eval", "{root}/run", "--batch-size", "-3"], 2),
        # sample
        (["sample", "{root}/missing"], 1),
        (["sample", "{root}/norun"], 1),
        (["sample", "{root}/empty.pt"], 1),
        (["sample", "{root}/run", "--length", "-1"], 2),
        (["sample", "{root}/run", "--temperature", "-0.5"], 2),
        (["sample", "{root}/run", "--top-k", "0"], 2),
        (["sample", "{root}/run", "--top-p", "0"], 2),
        (["sample", "{root}/run", "--prime-file", "{root}/missing.txt"], None),
        (["sample", "{root}/run", "--prime-file", "{root}/folder"], 2),
        (["sample", "{root}/run", "--prime-file", "{root}/latin1.txt"], 2),
        (["sample", "{root}/run", "--prime", "\u2603 snowman"], 1),
        # NaN / inf, integers torch cannot take, devices this machine lacks, bad --checkpoint
        (["sample", "{root}/run", "--temperature", "nan"], 2),
        (["sample", "{root}/run", "--temperature", "inf"], 2),
        (["sample", "{root}/run", "--top-p", "nan"], 2),
        (["sample", "{root}/run", "--seed", "99999999999999999999"], 2),
        (["sample", "{root}/run", "--seed", "-1"], 2),
        (["sample", "{root}/run", "--checkpoint", "bset"], 2),
        (["sample", "{root}/run", "--checkpoint", "{root}/missing.pt"], 1),
        (["eval", "{root}/run", "--dynamic", "--dyn-lr", "inf"], 2),
        (["eval", "{root}/run", "--dynamic", "--dyn-lr", "nan"], 2),
        (["eval", "{root}/run", "--dynamic", "--dyn-decay", "nan"], 2),
        (["eval", "{root}/run", "--checkpoint", "bset"], 2),
        (["eval", "{root}/run", "--checkpoint", "checkpoints/step-3.pt"], 1),
        *(
            ([command, "{root}/run", "--device", device], 2)
            for command in ("eval", "sample")
            for device in _absent_devices()
        ),
    ]


def _absent_devices() -> list[str]:
    import torch

    names = ["meta", "toaster"]
    names += [] if torch.backends.mps.is_available() else ["mps"]
    xpu = getattr(torch, "xpu", None)
    names += [] if xpu is not None and xpu.is_available() else ["xpu"]
    return names + ([] if torch.cuda.device_count() > 7 else ["cuda:7"])


@pytest.mark.parametrize(
    "args,code", cases(), ids=lambda v: " ".join(v) if isinstance(v, list) else str(v)
)
def test_bad_input_is_one_line(world, args, code):
    argv = [a.replace("{root}", str(world)) for a in args]
    result = runner.invoke(app, argv)
    out = result.output
    assert result.exit_code != 0, out
    if code is not None:
        assert result.exit_code == code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in out
    assert out.count("error:") == 1, out
