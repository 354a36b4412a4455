"""`lstmlab sample`: stream generated text to stdout (a thin layer over `generate.sample_text`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lstmlab.checkpoint import load_for_inference
from lstmlab.cli.checkpoint_option import CheckpointChoiceOpt
from lstmlab.cli.common import handle_errors
from lstmlab.cli.options import DeviceOpt, RunArg
from lstmlab.device import resolve_device
from lstmlab.errors import UsageError
from lstmlab.generate import check_sampling_args, read_prime_file, sample_text


@handle_errors
def sample_cmd(
    run: RunArg,
    prime: Annotated[
        str | None,
        typer.Option(help="Text fed through the model before sampling (default: a newline)."),
    ] = None,
    prime_file: Annotated[
        Path | None, typer.Option(help="Read the prime text from this UTF-8 file.")
    ] = None,
    length: Annotated[int, typer.Option(help="Symbols to generate.")] = 500,
    temperature: Annotated[float, typer.Option(help="Softmax temperature; 0 means greedy.")] = 1.0,
    top_k: Annotated[
        int | None, typer.Option(help="Sample only among the k most likely symbols.")
    ] = None,
    top_p: Annotated[
        float | None, typer.Option(help="Nucleus sampling: smallest set with probability >= p.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same text).")] = 0,
    checkpoint: CheckpointChoiceOpt = "best",
    device: DeviceOpt = "auto",
) -> None:
    """Generate text from a trained run; the prime text warms the state first."""
    check_sampling_args(length, temperature, top_k, top_p, seed)
    if prime is not None and prime_file is not None:
        raise UsageError("pass --prime or --prime-file, not both")
    text = read_prime_file(prime_file) if prime_file is not None else prime
    dev = resolve_device(device)
    loaded = load_for_inference(run, which=checkpoint, device=dev)
    pieces = sample_text(
        loaded.model,
        loaded.tokenizer,
        text or "\n",
        length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        device=dev,
        window=loaded.config.eval.bptt,
    )
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
