"""How long the `lstmlab` command takes to start: --help, --version and shell completion.

    python benchmarks/startup.py            # 7 runs each, median and spread in seconds
    python benchmarks/startup.py --runs 15

Each case is a fresh `python -m lstmlab ...` process (what a user waits for),
timed interleaved with a bare `python -c pass` as the yardstick, so the table
also shows the interpreter's own start-up on this machine. It prints whether
the case imported torch (it must not: only commands that compute need it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": ["-c", "pass"],
    "lstmlab --version": ["-m", "lstmlab", "--version"],
    "lstmlab --help": ["-m", "lstmlab", "--help"],
    "lstmlab train --help": ["-m", "lstmlab", "train", "--help"],
    "completion (lstmlab tr<TAB>)": ["-m", "lstmlab"],
}
COMPLETION_ENV = {
    "_LSTMLAB_COMPLETE": "complete_bash",
    "COMP_WORDS": "lstmlab tr",
    "COMP_CWORD": "1",
}


def _env(case: str) -> dict:
    env = dict(os.environ)
    if case.startswith("completion"):
        env.update(COMPLETION_ENV)
    return env


def _time(case: str, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=_env(case), capture_output=True, check=False)
    return time.perf_counter() - start


def imports_torch(case: str, args: list[str]) -> bool:
    """Run the case in-process under a probe that reports whether torch was imported."""
    if args[0] != "-m":
        return False
    body = (
        "import contextlib\n"
        "with contextlib.suppress(SystemExit): runpy.run_module('lstmlab', run_name='__main__')\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.__stderr__)"
    )
    code = f"import runpy, sys, contextlib\nsys.argv = {['lstmlab', *args[2:]]!r}\n{body}"
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(case), capture_output=True, text=True
    )
    return "NO-TORCH" not in out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(args.runs):  # interleaved: load drifting on a shared machine hits every case
        for case, argv in CASES.items():
            times[case].append(_time(case, argv))
    print(f"{'case':32} {'median s':>9} {'min s':>7} {'max s':>7}  imports torch")
    for case, argv in CASES.items():
        t = times[case]
        torch = "yes" if imports_torch(case, argv) else "no"
        print(f"{case:32} {statistics.median(t):9.3f} {min(t):7.3f} {max(t):7.3f}  {torch}")


if __name__ == "__main__":
    main()
