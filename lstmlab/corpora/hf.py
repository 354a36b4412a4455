"""`hf`: any text dataset of the Hugging Face `datasets` library, as a character corpus.

    lstmlab prepare hf NAME [--config C] [--text-field F] [--split-map train=train,valid=validation,test=test]

NAME is a Hub dataset id (loaded with `datasets.load_dataset`, which keeps
its own cache and honours HF_DATASETS_OFFLINE / HF_HUB_OFFLINE), a local
folder of data files (`train.txt`, `validation.txt`, ... or csv/json/parquet;
also `load_dataset`), or a folder written by `save_to_disk` (`load_from_disk`).

Each split's documents (the `--text-field` column, default `text`) are joined
in order with "\\n" between them. `--split-map` names the dataset split that
becomes each of train/valid/test; a valid or test split the dataset lacks is
cut from the end of the train text by `--fractions` (default 0.9 / 0.05 /
0.05, renormalised over the parts involved), so a dataset with only `train`
is split 90/5/5. The vocabulary is every character of the three texts, as
for `text`. sources hold the sha256 of each split's joined text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lstmlab.corpora import store
from lstmlab.corpora.text import DEFAULT_FRACTIONS, check_fractions, write_char_splits
from lstmlab.errors import CorpusError, UsageError

if TYPE_CHECKING:
    from lstmlab.corpora import PrepareRequest

SEPARATOR = "\n"
DEFAULT_TEXT_FIELD = "text"
DEFAULT_SPLIT_MAP = {"train": "train", "valid": "validation", "test": "test"}
OPTIONS = ("config", "text_field", "split_map", "fractions")


def parse_split_map(text: str) -> dict[str, str]:
    """'train=train,valid=validation,test=test' -> dict; keys must be train/valid/test."""
    out = dict(DEFAULT_SPLIT_MAP)
    for part in filter(None, (p.strip() for p in text.split(","))):
        ours, sep, theirs = (x.strip() for x in part.partition("="))
        if not sep or ours not in store.SPLITS or not theirs:
            raise UsageError(
                f"--split-map entry {part!r} is not OURS=THEIRS with OURS in train/valid/test",
                hint="e.g. --split-map train=train,valid=validation,test=test",
            )
        out[ours] = theirs
    return out


def prepare(request: PrepareRequest) -> store.Corpus:
    """Load NAME with `datasets`, join each split's documents and write a character corpus."""
    request.check("hf", options=OPTIONS, inputs=True)
    if request.source is not None:
        raise UsageError(
            "hf takes the dataset as NAME, not --source", hint="lstmlab prepare hf NAME"
        )
    if len(request.inputs) != 1:
        raise UsageError(
            "hf needs exactly one dataset NAME (a Hub id or a local folder)",
            hint="e.g. `lstmlab prepare hf wikitext --config wikitext-2-raw-v1`",
        )
    dataset_name = request.inputs[0]
    config = request.options.get("config")
    field = request.options.get("text_field", DEFAULT_TEXT_FIELD)
    split_map = dict(request.options.get("split_map", DEFAULT_SPLIT_MAP))
    fractions = check_fractions(request.options.get("fractions", DEFAULT_FRACTIONS))
    name = request.folder_name(default_name(dataset_name, config))
    with request.progress.task(f"load {dataset_name}", total=None):
        available = load(dataset_name, config)
    texts = {}
    with request.progress.task("join documents", total=3) as task:
        for ours in store.SPLITS:
            theirs = split_map[ours]
            if theirs in available:
                texts[ours] = join_documents(available[theirs], field, f"{dataset_name}[{theirs}]")
            elif ours == "train":
                raise CorpusError(
                    f"{dataset_name} has no split {theirs!r} (it has {', '.join(available)})",
                    hint="name the training split with --split-map train=NAME",
                )
            task.advance()
    missing = [s for s in store.SPLITS if s not in texts]
    if missing:
        texts.update(cut_from_train(texts.pop("train"), missing, fractions, dataset_name))
    sources = {
        f"{dataset_name}:{split}": hashlib.sha256(texts[split].encode("utf-8")).hexdigest()
        for split in store.SPLITS
    }
    extra = {
        "dataset": dataset_name,
        "config": config,
        "text_field": field,
        "split_map": split_map,
        "separator": SEPARATOR,
        "cut_from_train": missing,
    }
    if missing:
        extra["fractions"] = list(fractions)
    return write_char_splits(request, name, texts, sources=sources, extra=extra)


def default_name(dataset_name: str, config: str | None) -> str:
    """Folder name from the dataset's last path part (and config): 'Salesforce/wikitext' -> 'wikitext'."""
    base = Path(dataset_name.rstrip("/")).name or "hf"
    if config:
        base = f"{base}-{config}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).lstrip(".-") or "hf"


def load(dataset_name: str, config: str | None) -> Mapping:
    """The dataset's splits, name -> Dataset; every failure becomes a one-line CorpusError."""
    import datasets

    local = Path(dataset_name)
    looks_local = dataset_name.startswith((".", "/", "~")) or local.exists()
    if looks_local and not local.exists():
        raise CorpusError(
            f"{dataset_name} does not exist", hint="pass a dataset folder or a Hub id"
        )
    try:
        if local.is_dir() and (
            (local / "dataset_dict.json").is_file() or (local / "state.json").is_file()
        ):
            loaded = datasets.load_from_disk(str(local))
        else:
            loaded = datasets.load_dataset(dataset_name, config)
    except (ConnectionError, FileNotFoundError) as exc:
        raise CorpusError(
            f"cannot load dataset {dataset_name!r}: {_first_line(exc)}",
            hint="check the name; offline (HF_DATASETS_OFFLINE=1) only cached datasets and local folders load",
        ) from None
    except (ValueError, OSError, ImportError) as exc:  # unknown config, bad files, missing extras
        raise CorpusError(f"cannot load dataset {dataset_name!r}: {_first_line(exc)}") from None
    except (
        Exception
    ) as exc:  # datasets/huggingface_hub raise their own kinds (DatasetNotFoundError, ...)
        if exc.__class__.__module__.split(".")[0] not in ("datasets", "huggingface_hub"):
            raise
        raise CorpusError(
            f"cannot load dataset {dataset_name!r}: {exc.__class__.__name__}: {_first_line(exc)}",
            hint="check the name and --config",
        ) from None
    if isinstance(loaded, datasets.Dataset):  # a single split saved to disk
        return {"train": loaded}
    return dict(loaded)


def join_documents(dataset, field: str, where: str) -> str:
    """The `field` column's strings joined with SEPARATOR; a missing or non-string column is an error."""
    columns = list(dataset.column_names)
    if field not in columns:
        raise CorpusError(
            f"{where} has no field {field!r} (fields: {', '.join(columns)})",
            hint="choose the text column with --text-field",
        )
    dtype = getattr(dataset.features[field], "dtype", None)
    if dtype not in ("string", "large_string"):
        raise CorpusError(
            f"{where} field {field!r} does not hold text (it is {dtype or 'nested'})",
            hint="choose a string column with --text-field",
        )
    return SEPARATOR.join(v for v in dataset[field] if v is not None)  # missing values skipped


def cut_from_train(text: str, missing: list[str], fractions, dataset_name: str) -> dict[str, str]:
    """Split the train text contiguously into train and the `missing` splits by their fractions."""
    parts = ["train", *missing]
    weights = [fractions[store.SPLITS.index(p)] for p in parts]
    total = sum(weights)
    out, start = {}, 0
    for i, (part, weight) in enumerate(zip(parts, weights)):
        end = len(text) if i == len(parts) - 1 else start + int(len(text) * weight / total)
        out[part] = text[start:end]
        start = end
    if any(not t for t in out.values()):
        raise CorpusError(
            f"{dataset_name} has {len(text):,} characters of train text, too few to cut {', '.join(missing)} from",
            hint="use a larger dataset or map existing splits with --split-map",
        )
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
