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


CorpusArg = Annotated[
    str,
    typer.Argument(
        help="Which corpus: ptb, enwik8, text, builtin or hf.",
        metavar="CORPUS",
        show_default=False,
    ),
]
InputsArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Text files for `text`; the dataset NAME (Hub id or folder) for `hf`.",
        metavar="FILE",
        show_default=False,
    ),
]
SourceOpt = Annotated[
    Path | None,
    typer.Option(
        help="Local copy (file, folder or archive) to read instead of downloading.",
        metavar="PATH",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Data root; default $LSTMLAB_DATA_DIR or ./data.",
        metavar="DIR",
        show_default=False,
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Option(help="Folder name under the data dir; default: the corpus kind.", metavar="NAME"),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing lstmlab corpus of that name (any other folder is never replaced).",
    ),
]
FractionsOpt = Annotated[
    str | None,
    typer.Option(
        help="train,valid,test fractions for text and builtin (hf: for splits cut from train).",
        metavar="F,F,F",
        show_default="0.9,0.05,0.05",
    ),
]
WithDocstringsOpt = Annotated[
    bool,
    typer.Option(
        "--with-docstrings", help="builtin: add the standard library's module docstrings."
    ),
]
ConfigOpt = Annotated[
    str | None, typer.Option(help="hf: the dataset's configuration name.", metavar="C")
]
TextFieldOpt = Annotated[
    str | None,
    typer.Option(help="hf: the column holding the text.", metavar="F", show_default="text"),
]
SplitMapOpt = Annotated[
    str | None,
    typer.Option(
        help="hf: dataset split for each of ours, e.g. train=train,valid=validation,test=test.",
        metavar="MAP",
    ),
]
TokenizerOpt = Annotated[
    str | None,
    typer.Option(
        help="sentencepiece: re-encode with subwords trained on train (default: the corpus's own).",
        metavar="KIND",
    ),
]
VocabSizeOpt = Annotated[
    int | None,
    typer.Option(help="sentencepiece vocabulary size.", show_default="1024"),
]
ModelTypeOpt = Annotated[
    str | None,
    typer.Option(help="sentencepiece model: unigram or bpe.", show_default="unigram"),
]


@handle_errors
def prepare_cmd(
    corpus: CorpusArg,
    inputs: InputsArg = None,
    source: SourceOpt = None,
    data_dir: DataDirOpt = None,
    name: NameOpt = None,
    force: ForceOpt = False,
    fractions: FractionsOpt = None,
    with_docstrings: WithDocstringsOpt = False,
    config: ConfigOpt = None,
    text_field: TextFieldOpt = None,
    split_map: SplitMapOpt = None,
    tokenizer: TokenizerOpt = None,
    vocab_size: VocabSizeOpt = None,
    model_type: ModelTypeOpt = None,
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
