"""Re-encode any prepared corpus with a sentencepiece model trained on its train split.

`lstmlab prepare CORPUS --tokenizer sentencepiece` runs the corpus module as
usual (it writes characters or bytes into a temporary folder), decodes each
split back to its text, trains sentencepiece on the train text only
(`lstmlab.subword`), encodes the three texts and writes the corpus under its
usual name. So every corpus (ptb, enwik8, text, builtin, hf) gains subword
tokenisation without knowing about it. Each split's `chars` is the length
of its text, which the pieces' `char_lengths` add up to exactly.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lstmlab.corpora import store
from lstmlab.errors import CorpusError
from lstmlab.progress import NullProgress, Progress
from lstmlab.subword import MODEL_FILE, SentencePieceTokenizer, SubwordOptions, train_sentencepiece


def encode_ids(tokenizer: SentencePieceTokenizer, text: str) -> np.ndarray:
    return np.asarray(tokenizer.encode(text), dtype=np.int64)


def subword_corpus(
    base: store.Corpus,
    data_dir: Path,
    options: SubwordOptions,
    progress: Progress | None = None,
    *,
    replace: bool = False,
    reading: Iterable[Path | str] = (),
) -> store.Corpus:
    """Re-encode a prepared character/byte corpus with sentencepiece trained on its train split.

    Written under `data_dir` with the base corpus's name, under the same rules as
    any corpus (`store.check_target`: an existing corpus only with `replace`,
    nothing else ever, no folder holding a file in `reading`); its sources and
    extra metadata carry over, and every split's `chars` equals the length of its text.
    """
    progress = progress or NullProgress()
    store.check_target(data_dir, base.name, replace=replace, reading=reading)
    with progress.task("decode splits", total=len(store.SPLITS)) as task:
        texts = {}
        for split in store.SPLITS:
            texts[split] = base.tokenizer.decode(base.tokens(split).tolist())
            task.advance()
    with progress.task(f"train sentencepiece ({options.model_type})", total=None):
        tokenizer = train_sentencepiece(texts["train"], options)
    with progress.task("encode splits", total=len(store.SPLITS)) as task:
        splits = {}
        for split in store.SPLITS:
            splits[split] = encode_ids(tokenizer, texts[split])
            task.advance()
    # checked before writing, so a failure never costs the corpus already there
    char_len = tokenizer.char_lengths()
    for split in store.SPLITS:
        if store.count_chars(splits[split], char_len) != len(texts[split]):
            raise CorpusError(
                f"sentencepiece pieces of split {split} do not add up to its {len(texts[split]):,} characters"
            )
    extra = {
        **base.meta.extra,
        "base_tokenizer": base.meta.tokenizer.get("kind"),
        "sentencepiece": {"vocab_size": tokenizer.vocab_size, "model_type": options.model_type},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / MODEL_FILE
        model_path.write_bytes(tokenizer.model_proto)
        return store.write_corpus(
            data_dir,
            base.name,
            tokenizer,
            splits,
            sources=base.meta.sources,
            extra=extra,
            files={MODEL_FILE: model_path},
            replace=replace,
            reading=reading,
        )
