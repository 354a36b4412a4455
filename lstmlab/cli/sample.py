"""`lstmlab sample`: stream generated text to stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lstmlab.checkpoint import load_for_inference
from lstmlab.cli.common import handle_errors
from lstmlab.cli.options import CheckpointOpt, DeviceOpt, RunArg
from lstmlab.device import resolve_device
from lstmlab.errors import UsageError
from lstmlab.generate import check_sampling_args, generate


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
    checkpoint: CheckpointOpt = "best",
    device: DeviceOpt = "auto",
) -> None:
    """Generate text from a trained run; the prime text warms the state first."""
    check_sampling_args(length, temperature, top_k, top_p)
    if prime is not None and prime_file is not None:
        raise UsageError("pass --prime or --prime-file, not both")
    if prime_file is not None:
        try:
            prime = prime_file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--prime-file {prime_file} is not UTF-8 text") from None
        except IsADirectoryError:
            raise UsageError(f"--prime-file {prime_file} is a folder, not a file") from None
    dev = resolve_device(device)
    model, tokenizer, _cfg, _ckpt = load_for_inference(run, which=checkpoint, device=dev)
    if prime is None or prime == "":
        prime = "\n"
    prime_ids = tokenizer.encode(prime)
    out = sys.stdout
    out.write(tokenizer.decode(prime_ids))
    # Decode growing runs so multi-byte characters (byte corpora) print whole.
    pending: list[int] = []
    for token in generate(
        model,
        prime_ids,
        length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        device=dev,
    ):
        pending.append(token)
        text = tokenizer.decode(pending)
        if not text.endswith("\ufffd") or len(pending) > 4:
            out.write(text)
            out.flush()
            pending.clear()
    if pending:
        out.write(tokenizer.decode(pending))
    out.write("\n")
    out.flush()
