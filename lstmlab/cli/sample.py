"""`lstmlab sample`: stream generated text to stdout (a thin layer over `generate.sample_text`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lstmlab.cli.checkpoint_option import CheckpointChoiceOpt
from lstmlab.cli.common import err_console, handle_errors
from lstmlab.cli.options import DeviceOpt, RunArg
from lstmlab.errors import UsageError

PrimeOpt = Annotated[
    str | None,
    typer.Option(
        metavar="TEXT",
        help="Text fed through the model before sampling.",
        show_default="a newline",
    ),
]
PrimeFileOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE", help="Read the prime text from this UTF-8 file.", show_default=False
    ),
]
LengthOpt = Annotated[int, typer.Option(metavar="INTEGER", help="Symbols to generate.")]
TemperatureOpt = Annotated[
    float, typer.Option(metavar="FLOAT", help="Softmax temperature; 0 means greedy.")
]
TopKOpt = Annotated[
    int | None,
    typer.Option(
        metavar="INTEGER",
        help="Sample only among the k most likely symbols.",
        show_default=False,
    ),
]
TopPOpt = Annotated[
    float | None,
    typer.Option(
        metavar="FLOAT",
        help="Nucleus sampling: smallest set with probability >= p.",
        show_default=False,
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        metavar="INTEGER",
        help="Random seed (same seed, same text).",
        show_default="random, printed",
    ),
]
NumSamplesOpt = Annotated[
    int,
    typer.Option(
        metavar="INTEGER", help="Samples to draw from the same prime (seeds S, S+1, ...)."
    ),
]
EchoOpt = Annotated[
    bool, typer.Option("--echo/--no-echo", help="Print the prime before each sample.")
]


@handle_errors
def sample_cmd(
    run: RunArg,
    prime: PrimeOpt = None,
    prime_file: PrimeFileOpt = None,
    length: LengthOpt = 500,
    temperature: TemperatureOpt = 1.0,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    seed: SeedOpt = None,
    num_samples: NumSamplesOpt = 1,
    echo: EchoOpt = True,
    checkpoint: CheckpointChoiceOpt = "best",
    device: DeviceOpt = "auto",
) -> None:
    """Generate text from a trained run, an export or hf://user/repo; the prime warms the state first.

    RUN may be `latest` (the newest folder under runs/).
    """
    import secrets

    from lstmlab.device import resolve_device
    from lstmlab.generate import check_sampling_args, read_prime_file, sample_text
    from lstmlab.portable import load_model
    from lstmlab.runs import resolve_run

    if num_samples < 1:
        raise UsageError(f"--num-samples must be >= 1, got {num_samples}")
    if seed is None:
        seed = secrets.randbelow(2**31)
        err_console.print(f"[dim]seed {seed} (pass --seed {seed} to draw the same text)[/]")
    check_sampling_args(length, temperature, top_k, top_p, seed + num_samples - 1)
    if prime is not None and prime_file is not None:
        raise UsageError("pass --prime or --prime-file, not both")
    text = read_prime_file(prime_file) if prime_file is not None else prime
    dev = resolve_device(device)
    model, tokenizer, cfg, _ = load_model(str(resolve_run(run)), which=checkpoint, device=dev)
    for index in range(num_samples):
        if index:
            sys.stdout.write("\n")
        for piece in sample_text(
            model,
            tokenizer,
            text or "\n",
            length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed + index,
            device=dev,
            echo=echo,
            window=cfg.eval.bptt,
        ):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    sys.stdout.flush()
