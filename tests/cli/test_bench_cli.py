"""`lstmlab bench` and benchmarks/throughput.py: a tiny run writes its results; bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from lstmlab.cli.app import app

from support import REPO

runner = CliRunner()
TINY = ["--sizes", "8", "--windows", "4", "--batch-size", "2", "--warmup", "1", "--threads", "1"]


def test_bench_writes_json_and_markdown(tmp_path):
    out = tmp_path / "results"
    result = runner.invoke(app, ["bench", *TINY, "--cells", "lstm", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "torch.nn.LSTM" in result.output and "lstm" in result.output
    (json_file,) = out.glob("*.json")
    assert json_file.with_suffix(".md").is_file()
    rows = json.loads(json_file.read_text())["rows"]
    assert [r["cell"] for r in rows] == ["torch.nn.LSTM", "lstm"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sizes", "8,x"], "--sizes takes comma-separated integers"),
        (["--cells", "nope"], "unknown cell"),
        (["--steps", "2"], "--steps must be >= 10"),
    ],
)
def test_bad_input_is_one_line(args, words):
    result = runner.invoke(app, ["bench", *TINY, *args])
    assert result.exit_code == 2
    assert words in result.output and "Traceback" not in result.output
    assert result.output.count("error:") == 1


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_cuda_without_a_gpu_is_one_line():
    result = runner.invoke(app, ["bench", *TINY, "--device", "cuda"])
    assert result.exit_code == 2 and "not available on this machine" in result.output


def test_throughput_script_is_the_same_command():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "COLUMNS": "200", "PATH": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--sizes" in result.stdout and "--windows" in result.stdout
