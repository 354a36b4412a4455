"""`lstmlab prepare`: build a corpus folder (train/valid/test.bin + meta.json) under the data dir."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lstmlab.cli.common import RichProgress, console, handle_errors
from lstmlab.errors import UsageError

if TYPE_CHECKING:
    from lstmlab.subword import SubwordOptions


@handle_errors
def prepare_cmd(
    corpus: Annotated[
        str,
        typer.Argument(
            help="Which corpus: ptb, enwik8, text, builtin or hf.",
            metavar="CORPUS",
            show_default=False,
        ),
    ],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Text files for `text`; the dataset NAME (Hub id or folder) for `hf`.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            help="Local copy (file, folder or archive) to read instead of downloading.",
            metavar="PATH",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Data root; default $LSTMLAB_DATA_DIR or ./data.",
            metavar="DIR",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Folder name under the data dir; default: the corpus kind.", metavar="NAME"
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing lstmlab corpus of that name (any other folder is never replaced).",
        ),
    ] = False,
    fractions: Annotated[
        str | None,
        typer.Option(
            help="train,valid,test fractions for text and builtin (hf: for splits cut from train).",
            metavar="F,F,F",
            show_default="0.9,0.05,0.05",
        ),
    ] = None,
    with_docstrings: Annotated[
        bool,
        typer.Option(
            "--with-docstrings", help="builtin: add the standard library's module docstrings."
        ),
    ] = False,
    config: Annotated[
        str | None, typer.Option(help="hf: the dataset's configuration name.", metavar="C")
    ] = None,
    text_field: Annotated[
        str | None,
        typer.Option(help="hf: the column holding the text.", metavar="F", show_default="text"),
    ] = None,
    split_map: Annotated[
        str | None,
        typer.Option(
            help="hf: dataset split for each of ours, e.g. train=train,valid=validation,test=test.",
            metavar="MAP",
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="sentencepiece: re-encode with subwords trained on train (default: the corpus's own).",
            metavar="KIND",
        ),
    ] = None,
    vocab_size: Annotated[
        int | None,
        typer.Option(help="sentencepiece vocabulary size.", show_default="1024"),
    ] = None,
    model_type: Annotated[
        str | None,
        typer.Option(help="sentencepiece model: unigram or bpe.", show_default="unigram"),
    ] = None,
) -> None:
    """Prepare a corpus: read or download it, verify it, tokenise it, write DATA_DIR/NAME/.

    Corpora:

    - ptb: Mikolov's character-level Penn Treebank, 50 symbols (downloads simple-examples.tgz, or --source).

    - enwik8: first 10^8 bytes of English Wikipedia, bytes as tokens, 90M/5M/5M (downloads enwik8.zip, or --source).

    - text FILE...: your own UTF-8 text, characters as tokens, split by --fractions.

    - builtin: CPython's documentation text, no network needed (--with-docstrings for more).

    - hf NAME: a `datasets` text dataset (Hub id, data folder or save_to_disk folder);
      --config, --text-field, --split-map; missing valid/test are cut from train by --fractions.

    An existing DATA_DIR/NAME is replaced only if it is an lstmlab corpus and --force is given; nothing else is ever replaced or deleted.

    Any of them with --tokenizer sentencepiece --vocab-size N [--model-type unigram|bpe]:
    subword ids from a model trained on the train split; bpc stays per character.
    """
    from lstmlab.corpora import PrepareRequest, prepare_corpus, store
    from lstmlab.corpora.hf import parse_split_map
    from lstmlab.corpora.text import parse_fractions

    options: dict = {}
    if fractions is not None:
        options["fractions"] = parse_fractions(fractions)
    if with_docstrings:
        options["with_docstrings"] = True
    if config is not None:
        options["config"] = config
    if text_field is not None:
        options["text_field"] = text_field
    if split_map is not None:
        options["split_map"] = parse_split_map(split_map)
    subword = subword_options(tokenizer, vocab_size, model_type)
    request = PrepareRequest(
        data_dir=data_dir if data_dir is not None else store.default_data_dir(),
        source=source,
        inputs=tuple(inputs or ()),
        name=name,
        force=force,
        options=options,
        progress=RichProgress(),
    )
    prepared = prepare_corpus(corpus, request, subword)
    table = Table(title=escape(f"{prepared.name}: vocabulary {prepared.vocab_size}"))
    table.add_column("split")
    table.add_column("tokens", justify="right")
    table.add_column("characters", justify="right")
    for split, info in prepared.meta.splits.items():
        table.add_row(split, f"{info.tokens:,}", f"{info.chars:,}")
    console.print(table)
    console.print(f"written to {prepared.path}", markup=False)


def subword_options(
    tokenizer: str | None, vocab_size: int | None, model_type: str | None
) -> SubwordOptions | None:
    """--tokenizer/--vocab-size/--model-type -> SubwordOptions, or None for the corpus's own tokens."""
    if tokenizer is None:
        if vocab_size is not None or model_type is not None:
            raise UsageError(
                "--vocab-size and --model-type apply to sentencepiece only",
                hint="add --tokenizer sentencepiece",
            )
        return None
    if tokenizer != "sentencepiece":
        raise UsageError(
            f"--tokenizer {tokenizer!r} is not available",
            hint="use --tokenizer sentencepiece, or leave it out for the corpus's own characters/bytes",
        )
    from lstmlab.subword import SubwordOptions

    defaults = SubwordOptions()
    return SubwordOptions(
        vocab_size=defaults.vocab_size if vocab_size is None else vocab_size,
        model_type=defaults.model_type if model_type is None else model_type,
    )
