"""Synthetic run folders (finished, running, crashed, stopped, damaged) for the compare tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lstmlab.config import validate

from support import TINY_RECIPE


def make_run(
    root: Path,
    name: str,
    *,
    valid: list[tuple[int, int, float, float]] = (),  # (step, tokens, elapsed_s, bpc)
    end: bool = True,
    corpus: str = "tiny",
    cell: dict | None = None,
    num_parameters: int | None = 1234,
    test_bpc: float | None = None,
) -> Path:
    """A run folder as `lstmlab train` (and `eval`) would leave it, without training."""
    run = Path(root) / name
    (run / "checkpoints").mkdir(parents=True)
    recipe = {**TINY_RECIPE, "data": {"corpus": corpus}}
    if cell is not None:
        recipe["model"] = {**recipe["model"], "cell": cell}
    cfg = validate(recipe).to_dict() if cell is None else recipe
    import yaml

    (run / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    records = []
    for step, tokens, elapsed, bpc in valid:
        records.append(
            {
                "kind": "train",
                "step": step,
                "tokens": tokens,
                "loss": 1.0,
                "bpc": bpc + 0.1,
                "lr": 0.01,
                "tokens_per_s": 10.0,
                "elapsed_s": elapsed,
            }
        )
        records.append(
            {
                "kind": "valid",
                "step": step,
                "tokens": tokens,
                "loss": 1.0,
                "bpc": bpc,
                "perplexity": 2**bpc,
                "elapsed_s": elapsed,
                "valid_tokens": 100,
            }
        )
    if end and valid:
        best = min(valid, key=lambda v: v[3])
        records.append(
            {
                "kind": "end",
                "step": valid[-1][0],
                "tokens": valid[-1][1],
                "reason": "max_steps",
                "elapsed_s": valid[-1][2],
                "best_valid_bpc": best[3],
                "best_step": best[0],
            }
        )
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if num_parameters is not None:
        torch.save(
            {"format_version": 1, "num_parameters": num_parameters}, run / "checkpoints" / "best.pt"
        )
    if test_bpc is not None:
        report = {"splits": {"test": {"bpc": test_bpc, "perplexity": 2**test_bpc, "tokens": 10}}}
        (run / "eval.json").write_text(json.dumps(report))
    return run


def standard_runs(root: Path) -> dict[str, Path]:
    """Three finished runs of one corpus with known curves; `b` is best, `c` has a test bpc."""
    return {
        "a": make_run(root, "a", valid=[(10, 1000, 2.0, 3.0), (20, 2000, 4.0, 2.5)]),
        "b": make_run(
            root, "b", valid=[(10, 1000, 1.0, 2.8), (20, 2000, 2.0, 2.2)], num_parameters=99
        ),
        "c": make_run(
            root,
            "c",
            valid=[(10, 1000, 3.0, 2.9), (20, 2000, 6.0, 2.4), (30, 3000, 9.0, 2.6)],
            test_bpc=2.45,
        ),
    }
