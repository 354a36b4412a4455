"""`lstmlab eval`: bits per character over whole splits, state carried across windows."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from lstmlab.checkpoint import load_for_inference
from lstmlab.cli.common import RichProgress, console, handle_errors
from lstmlab.cli.options import CheckpointOpt, DataDirOpt, DeviceOpt, RunArg
from lstmlab.config import DynamicEvalConfig
from lstmlab.corpora.store import default_data_dir, open_corpus
from lstmlab.device import resolve_device
from lstmlab.dynamic_eval import dynamic_evaluate, gradient_rms
from lstmlab.errors import UsageError, VocabularyError
from lstmlab.evaluate import evaluate, evaluate_temperatures
from lstmlab.evaluate import tune_temperature as search_temperature
from lstmlab.runs import run_dir_of


@handle_errors
def eval_cmd(
    run: RunArg,
    split: Annotated[
        Literal["valid", "test", "all"], typer.Option(help="Which split(s) to score.")
    ] = "test",
    checkpoint: CheckpointOpt = "best",
    batch_size: Annotated[
        int | None, typer.Option(help="Parallel streams (default: the recipe's eval.batch_size).")
    ] = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic",
            help="Also score with dynamic evaluation (Krause et al. 2018, arXiv:1709.07432).",
        ),
    ] = False,
    dyn_lr: Annotated[
        float | None, typer.Option(help="Dynamic eval learning rate η (eval.dynamic.lr).")
    ] = None,
    dyn_decay: Annotated[
        float | None, typer.Option(help="Dynamic eval decay λ toward the trained weights.")
    ] = None,
    segment_len: Annotated[
        int | None, typer.Option(help="Dynamic eval: tokens scored before each update.")
    ] = None,
    ms_tokens: Annotated[
        int | None,
        typer.Option(help="Dynamic eval: training tokens for the gradient statistics (all)."),
    ] = None,
    tune_temperature: Annotated[
        bool | None,
        typer.Option(
            "--tune-temperature/--no-tune-temperature",
            help="Search the softmax temperature in [0.8, 1.0] on valid and also report test bpc with it "
            "(default: the recipe's eval.tune_temperature).",
        ),
    ] = None,
) -> None:
    """Evaluate a run on valid/test: bits per character and per-character perplexity; writes eval.json.

    With --dynamic each split is also scored with dynamic evaluation (gradient
    statistics from the train split, then batch-1 segments, each scored before
    the weights adapt to it); eval.json records both figures.
    """
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    model, tokenizer, cfg, ckpt = load_for_inference(run, which=checkpoint, device=dev)
    overrides = {
        "lr": dyn_lr,
        "decay": dyn_decay,
        "segment_len": segment_len,
        "ms_tokens": ms_tokens,
    }
    if not dynamic and any(v is not None for v in overrides.values()):
        raise UsageError(
            "--dyn-lr, --dyn-decay, --segment-len and --ms-tokens apply to dynamic evaluation",
            hint="add --dynamic",
        )
    dyn_cfg = dynamic_settings(cfg.eval.dynamic, overrides)
    corpus = open_corpus(data_dir or cfg.data.data_dir or default_data_dir(), cfg.data.corpus)
    if corpus.tokenizer.to_meta() != tokenizer.to_meta():
        raise VocabularyError(
            f"corpus {corpus.name!r} in {corpus.path.parent} has another vocabulary than {ckpt} was trained on",
            hint="evaluate on the corpus the run was trained on (check --data-dir)",
        )
    splits = ["valid", "test"] if split == "all" else [split]
    table = Table(title=escape(str(ckpt)))
    columns = ["split", "tokens", "bpc", "perplexity (char)", "seconds"]
    if dynamic:
        columns += ["dynamic bpc", "gain", "dynamic seconds"]
    for col in columns:
        table.add_column(col, justify="right" if col != "split" else "left")
    results = {}
    rms = None
    if dynamic:
        rms = gradient_rms(
            model,
            corpus.tokens("train"),
            batch_size=dyn_cfg.ms_batch_size,
            segment_len=dyn_cfg.segment_len,
            max_tokens=dyn_cfg.ms_tokens,
            device=dev,
            progress=RichProgress(),
        )
    for name in splits:
        t0 = time.perf_counter()
        res = evaluate(
            model,
            corpus.tokens(name),
            batch_size=batch_size or cfg.eval.batch_size,
            bptt=cfg.eval.bptt,
            char_lengths=tokenizer.char_lengths(),
            temperature=cfg.eval.temperature,
            device=dev,
            progress=RichProgress(),
            description=f"eval {name}",
        )
        seconds = time.perf_counter() - t0
        results[name] = {**res.to_dict(), "seconds": seconds}
        row = [name, f"{res.tokens:,}", f"{res.bpc:.4f}", f"{res.perplexity:.4f}", f"{seconds:.1f}"]
        if rms is not None:
            t0 = time.perf_counter()
            dyn = dynamic_evaluate(
                model,
                corpus.tokens(name),
                rms,
                dyn_cfg,
                char_lengths=tokenizer.char_lengths(),
                temperature=cfg.eval.temperature,
                device=dev,
                progress=RichProgress(),
                description=f"dynamic eval {name}",
            )
            dyn_seconds = time.perf_counter() - t0
            results[name]["dynamic"] = {
                **dyn.to_dict(),
                "seconds": dyn_seconds,
                "gain_bpc": res.bpc - dyn.bpc,
                "settings": dyn_cfg.model_dump(),
            }
            row += [f"{dyn.bpc:.4f}", f"{res.bpc - dyn.bpc:+.4f}", f"{dyn_seconds:.1f}"]
        table.add_row(*row)
    console.print(table)
    tuned = None
    if cfg.eval.tune_temperature if tune_temperature is None else tune_temperature:
        kwargs = {
            "batch_size": batch_size or cfg.eval.batch_size,
            "bptt": cfg.eval.bptt,
            "char_lengths": tokenizer.char_lengths(),
            "device": dev,
            "progress": RichProgress(),
        }
        best, on_valid = search_temperature(
            model, corpus.tokens("valid"), description="tune temperature on valid", **kwargs
        )
        temps = (cfg.eval.temperature, best)
        on_test = evaluate_temperatures(
            model, corpus.tokens("test"), temps, description="eval test", **kwargs
        )
        tuned = {
            "temperature": best,
            "valid_bpc": {str(t): r.bpc for t, r in on_valid.items()},
            "test_bpc_untuned": on_test[temps[0]].bpc,
            "test_bpc_tuned": on_test[best].bpc,
        }
        console.print(
            f"temperature {best:.2f} (best on valid, grid 0.80-1.00): "
            f"valid bpc {on_valid[best].bpc:.4f}; test bpc {tuned['test_bpc_tuned']:.4f} "
            f"(at {temps[0]:g}: {tuned['test_bpc_untuned']:.4f})"
        )
    out = run_dir_of(ckpt) / "eval.json"
    existing = {}
    if out.is_file():
        try:
            existing = json.loads(out.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            existing = {}
    existing.setdefault("splits", {}).update(results)
    if tuned is not None:
        existing["tuned_temperature"] = tuned
    existing.update(
        {"checkpoint": str(ckpt), "corpus": corpus.name, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    )
    out.write_text(json.dumps(existing, indent=2) + "\n", encoding="utf-8")
    console.print(f"[dim]wrote {escape(str(out))}[/]")


def dynamic_settings(base: DynamicEvalConfig, overrides: dict) -> DynamicEvalConfig:
    """The recipe's eval.dynamic with the CLI's non-None overrides, validated."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return DynamicEvalConfig.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = "--" + {"lr": "dyn-lr", "decay": "dyn-decay"}.get(
            str(err["loc"][0]), str(err["loc"][0]).replace("_", "-")
        )
        raise UsageError(f"{flag}: {err['msg']}") from None
