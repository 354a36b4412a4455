"""lstmlab: character-level language modelling with recurrent networks.

The library is the Python API; every command is a thin layer over one of these:

    from lstmlab import load_recipe, fit, evaluate_run, sample_text
    cfg = load_recipe("recipes/tiny/lstm.yaml", ["train.max_steps=200"])
    result = fit(cfg, "runs/notebook")               # lstmlab train
    report = evaluate_run("runs/notebook")           # lstmlab eval
    print(report.splits["test"].result.bpc)

Names are imported on first use, so `import lstmlab` (and `lstmlab --help`)
does not pay for torch until something needs it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_recipe": "lstmlab.config",
    "RunConfig": "lstmlab.config",
    "prepare_corpus": "lstmlab.corpora",
    "PrepareRequest": "lstmlab.corpora",
    "open_corpus": "lstmlab.corpora.store",
    "fit": "lstmlab.train",
    "TrainResult": "lstmlab.train",
    "resume_config": "lstmlab.resume",
    "plan_recipes": "lstmlab.zoo",
    "train_recipes": "lstmlab.zoo",
    "run_study": "lstmlab.tune",
    "evaluate_run": "lstmlab.evaluate",
    "write_eval": "lstmlab.evaluate",
    "sample_text": "lstmlab.generate",
    "load_for_inference": "lstmlab.checkpoint",
    "collect": "lstmlab.compare",
    "export_run": "lstmlab.portable",
    "score_text": "lstmlab.score",
}


def load(path_or_id, *, device="cpu", checkpoint="best"):
    """A trained model for notebooks, from a run folder, a .pt checkpoint, an export folder
    or hf://user/repo[@revision]: `.generate(...)`, `.score(text)`, `.module` (torch)."""
    from lstmlab.portable import load as _load

    return _load(path_or_id, device=device, checkpoint=checkpoint)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lstmlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", "load", *_EXPORTS]
