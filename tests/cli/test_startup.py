"""`lstmlab --help`, `--version` and shell completion start without importing torch.

(How long start-up takes is measured by benchmarks/startup.py, not asserted here.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, runpy, sys
sys.argv = {argv!r}
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    runpy.run_module("lstmlab", run_name="__main__")
heavy = [m for m in ("torch", "numpy", "datasets", "sentencepiece", "optuna") if m in sys.modules]
print("IMPORTED", ",".join(heavy))
"""


@pytest.mark.parametrize(
    "argv,env",
    [
        (["lstmlab", "--help"], {}),
        (["lstmlab", "--version"], {}),
        (["lstmlab", "train", "--help"], {}),
        (["lstmlab", "tune", "--help"], {}),
        (["lstmlab", "score", "-h"], {}),
        (
            ["lstmlab"],
            {"_LSTMLAB_COMPLETE": "complete_bash", "COMP_WORDS": "lstmlab tr", "COMP_CWORD": "1"},
        ),
    ],
)
def test_starts_without_torch(argv, env):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("IMPORTED"))
    assert line == "IMPORTED ", (argv, line, out.stderr[-500:])
