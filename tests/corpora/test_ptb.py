"""ptb: exact counts on the real files, and every input path (folder, data/, tgz, download) on synthetic ones."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile

import pytest

from lstmlab.corpora import PrepareRequest, ptb
from lstmlab.errors import ChecksumError, CorpusError, UsageError

SENTENCES = {
    "train": ["the cat sat on the mat", "a <unk> of $ N million", "it 's 99 % done"],
    "valid": ["the mat sat", "N cats"],
    "test": ["on a cat 's mat", "$ 9"],
}


def expected_text(raw: str) -> str:
    """What decode(ids) must give: each line's symbols, `_` shown as a space, one "\\n" per line."""
    lines = raw.split("\n")
    assert lines[-1].strip() == ""
    return "".join("".join(line.split()) + "\n" for line in lines[:-1]).replace("_", " ")


@pytest.fixture
def synthetic(tmp_path, monkeypatch, ptb_char_text):
    """Tiny ptb.char files (in the real layout) and their sha256 patched in as the expected ones."""
    texts = {split: ptb_char_text(lines) for split, lines in SENTENCES.items()}
    raw = {split: text.encode() for split, text in texts.items()}
    monkeypatch.setattr(
        ptb, "CHAR_SHA256", {s: hashlib.sha256(b).hexdigest() for s, b in raw.items()}
    )
    return raw


def write_folder(folder, raw):
    folder.mkdir(parents=True, exist_ok=True)
    for split, data in raw.items():
        (folder / f"ptb.char.{split}.txt").write_bytes(data)
    return folder


def write_tgz(path, raw):
    with tarfile.open(path, "w:gz") as tar:
        for split, data in raw.items():
            info = tarfile.TarInfo(f"simple-examples/data/ptb.char.{split}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_real_files_give_the_published_counts(ptb_dir, tmp_path):
    corpus = ptb.prepare(PrepareRequest(data_dir=tmp_path / "data", source=ptb_dir))
    counts = {split: info.tokens for split, info in corpus.meta.splits.items()}
    assert counts == {"train": 5_017_482, "valid": 393_042, "test": 442_423}
    assert corpus.vocab_size == 50
    assert corpus.tokenizer.symbols[0] == "\n" and "_" in corpus.tokenizer.symbols
    assert corpus.meta.sources == {
        f"ptb.char.{split}.txt": sha for split, sha in ptb.CHAR_SHA256.items()
    }
    valid_raw = (ptb_dir / "ptb.char.valid.txt").read_text(encoding="utf-8")
    assert corpus.tokenizer.decode(corpus.tokens("valid").tolist()) == expected_text(valid_raw)
    assert corpus.tokenizer.encode("the cat\n") == corpus.tokenizer.encode(
        "the_cat\n"
    )  # a typed space is `_`
    corpus.verify()


def test_real_folder_with_an_altered_file_is_refused(ptb_dir, tmp_path):
    copy = tmp_path / "ptb"
    shutil.copytree(
        ptb_dir,
        copy,
        ignore=shutil.ignore_patterns("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    )
    with open(copy / "ptb.char.test.txt", "ab") as f:
        f.write(b"x \n ")
    data = tmp_path / "data"
    with pytest.raises(
        ChecksumError,
        match="ptb.char.test.txt has sha256 [0-9a-f]{64}, expected " + ptb.CHAR_SHA256["test"],
    ):
        ptb.prepare(PrepareRequest(data_dir=data, source=copy))
    assert not data.exists()


def test_synthetic_folder_and_its_data_subfolder(synthetic, tmp_path):
    for source in (
        write_folder(tmp_path / "flat", synthetic),
        write_folder(tmp_path / "simple-examples" / "data", synthetic).parent,
    ):
        # the second source replaces the corpus the first one wrote: --force
        corpus = ptb.prepare(PrepareRequest(data_dir=tmp_path / "data", source=source, force=True))
        for split, data in synthetic.items():
            assert corpus.tokenizer.decode(corpus.tokens(split)) == expected_text(data.decode())
        assert corpus.meta.splits["valid"].tokens == len("the_mat_sat") + len("N_cats") + 2


def test_synthetic_archive(synthetic, tmp_path):
    archive = write_tgz(tmp_path / "simple-examples.tgz", synthetic)
    corpus = ptb.prepare(
        PrepareRequest(data_dir=tmp_path / "data", source=archive, name="ptb-small")
    )
    assert corpus.path == tmp_path / "data" / "ptb-small"
    assert corpus.tokenizer.decode(corpus.tokens("test")) == "on a cat 's mat\n$ 9\n"
    assert (
        corpus.meta.sources["simple-examples.tgz"]
        == hashlib.sha256(archive.read_bytes()).hexdigest()
    )
    assert (
        corpus.meta.sources["simple-examples/data/ptb.char.train.txt"] == ptb.CHAR_SHA256["train"]
    )


def test_download_when_no_source_is_given(synthetic, tmp_path, fake_server):
    payload = write_tgz(tmp_path / "served.tgz", synthetic).read_bytes()
    server = fake_server(payload)
    data = tmp_path / "data"
    corpus = ptb.prepare(PrepareRequest(data_dir=data, opener=server))
    assert server.requests[0].full_url == ptb.SIMPLE_EXAMPLES_URL
    assert (data / "downloads" / "simple-examples.tgz").read_bytes() == payload
    assert corpus.meta.splits["train"].tokens == sum(
        len("_".join(s.split())) + 1 for s in SENTENCES["train"]
    )
    ptb.prepare(PrepareRequest(data_dir=data, opener=server, force=True))
    assert len(server.requests) == 1  # the cached archive is reused


def test_archive_with_a_wrong_file_is_refused_and_leaves_no_corpus(synthetic, tmp_path):
    archive = write_tgz(
        tmp_path / "simple-examples.tgz", {**synthetic, "valid": synthetic["valid"] + b"x \n "}
    )
    with pytest.raises(ChecksumError, match="ptb.char.valid.txt") as info:
        ptb.prepare(PrepareRequest(data_dir=tmp_path / "data", source=archive))
    assert ptb.CHAR_SHA256["valid"] in info.value.message
    assert not (tmp_path / "data").exists()


def test_valid_symbol_missing_from_train_is_an_error(
    synthetic, tmp_path, monkeypatch, ptb_char_text
):
    raw = {**synthetic, "valid": ptb_char_text(["zebu"]).encode()}
    monkeypatch.setattr(
        ptb, "CHAR_SHA256", {s: hashlib.sha256(b).hexdigest() for s, b in raw.items()}
    )
    with pytest.raises(
        CorpusError,
        match=r"ptb.char.valid.txt uses 2 symbol\(s\) absent from the training split: 'b', 'z'",
    ):
        ptb.prepare(
            PrepareRequest(data_dir=tmp_path / "data", source=write_folder(tmp_path / "src", raw))
        )


def test_multi_character_symbol_is_an_error(tmp_path, monkeypatch):
    raw = {"train": b"a b \n cd \n ", "valid": b"a \n ", "test": b"b \n "}
    monkeypatch.setattr(
        ptb, "CHAR_SHA256", {s: hashlib.sha256(b).hexdigest() for s, b in raw.items()}
    )
    with pytest.raises(
        CorpusError, match="ptb.char.train.txt line 2 has a symbol of more than one character"
    ):
        ptb.prepare(
            PrepareRequest(data_dir=tmp_path / "data", source=write_folder(tmp_path / "src", raw))
        )


def test_bad_sources_are_usage_or_corpus_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        ptb.prepare(PrepareRequest(data_dir=tmp_path / "data", source=tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="does not hold ptb.char.train.txt"):
        ptb.prepare(PrepareRequest(data_dir=tmp_path / "data", source=tmp_path / "empty"))
    (tmp_path / "junk.tgz").write_bytes(b"not an archive")
    with pytest.raises(CorpusError, match="not a readable tar archive"):
        ptb.prepare(PrepareRequest(data_dir=tmp_path / "data", source=tmp_path / "junk.tgz"))
    with pytest.raises(UsageError, match="ptb takes no FILE arguments"):
        ptb.prepare(PrepareRequest(data_dir=tmp_path / "data", inputs=("a.txt",)))
    with pytest.raises(UsageError, match="ptb does not take --fractions"):
        ptb.prepare(
            PrepareRequest(data_dir=tmp_path / "data", options={"fractions": (0.8, 0.1, 0.1)})
        )
