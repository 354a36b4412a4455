"""`lstmlab score`: bits per character of any text, and where the model is surprised."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lstmlab.cli.common import RichProgress, console, handle_errors
from lstmlab.cli.options import CheckpointOpt, DataDirOpt, DeviceOpt
from lstmlab.errors import UsageError


@handle_errors
def score_cmd(
    run: Annotated[
        str,
        typer.Argument(
            help="A run folder, checkpoint .pt, export folder or hf://USER/REPO.",
            show_default=False,
        ),
    ],
    file: Annotated[
        Path | None,
        typer.Argument(help="UTF-8 text file to score ('-' reads stdin).", show_default=False),
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="Score this text instead of a file.")
    ] = None,
    per_char: Annotated[
        Path | None, typer.Option("--per-char", help="Write index, char, bits per character (TSV).")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Write a page colouring each character by its surprisal."),
    ] = None,
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic", help="Adapt the weights while scoring, as `eval --dynamic` does."
        ),
    ] = False,
    checkpoint: CheckpointOpt = "best",
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Score text: total bits and bits per character; optionally per character (TSV) and as HTML."""
    from lstmlab.device import resolve_device
    from lstmlab.portable import load_model
    from lstmlab.score import dynamic_scorer, score_text, write_html, write_tsv

    if (file is None) == (text is None):
        raise UsageError("pass a FILE to score or --text, exactly one of them")
    if file is not None:
        try:
            body = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{file} is not UTF-8 text") from None
        except IsADirectoryError:
            raise UsageError(f"{file} is a folder, not a text file") from None
    else:
        body = text
    dev = resolve_device(device)
    from lstmlab.runs import resolve_run

    run = str(resolve_run(run))  # `latest`: the newest run folder under runs/
    model, tokenizer, cfg, source = load_model(run, which=checkpoint, device=dev)
    dyn = None
    if dynamic:
        dyn = dynamic_scorer(
            model, tokenizer, cfg, data_dir=data_dir, device=dev, progress=RichProgress()
        )
    result = score_text(
        model, tokenizer, body, temperature=cfg.eval.temperature, device=dev, dynamic=dyn
    )
    label = f"{file or '--text'} under {source}"
    console.print(
        f"bpc {result.bpc:.4f}  total bits {result.total_bits:,.1f}  chars {result.chars:,}  "
        f"tokens {result.tokens:,}{'  (dynamic)' if dynamic else ''}",
        markup=False,
    )
    console.print(f"note: {result.note}", markup=False, style="dim", soft_wrap=True)
    if per_char is not None:
        console.print(f"wrote {write_tsv(result, per_char, source=label)}", markup=False)
    if html is not None:
        console.print(f"wrote {write_html(result, html, title=label)}", markup=False)
