"""hf: local `datasets` data (a data-file folder, a save_to_disk folder), never the network."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lstmlab.cli.app import app
from lstmlab.corpora import PrepareRequest, hf
from lstmlab.errors import CorpusError, UsageError

runner = CliRunner()
DOCS = [f"document {i}: the quick brown fox jumps over the lazy dog." for i in range(60)]


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Offline mode and a private cache, so no test can reach the Hub or the user's cache."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def prepare(tmp_path, name, **options):
    return hf.prepare(
        PrepareRequest(data_dir=tmp_path / "data", inputs=(str(name),), options=options)
    )


def decoded(corpus, split):
    return corpus.tokenizer.decode(corpus.tokens(split))


def test_data_file_folder_with_three_splits(tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(DOCS[:50]) + "\n", encoding="utf-8")
    (folder / "validation.txt").write_text("\n".join(DOCS[50:55]) + "\n", encoding="utf-8")
    (folder / "test.txt").write_text("\n".join(DOCS[55:]) + "\n", encoding="utf-8")
    corpus = prepare(tmp_path, folder)
    assert corpus.name == "mydata"
    assert decoded(corpus, "train") == "\n".join(DOCS[:50])  # documents joined by "\n"
    assert decoded(corpus, "valid") == "\n".join(DOCS[50:55])
    assert decoded(corpus, "test") == "\n".join(DOCS[55:])
    assert corpus.meta.extra["cut_from_train"] == []


def test_saved_train_only_dataset_is_cut_by_fractions(tmp_path):
    import datasets

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"content": DOCS, "n": list(range(60))}).save_to_disk(str(saved))
    corpus = prepare(tmp_path, saved, text_field="content", fractions=(0.8, 0.1, 0.1))
    whole = "\n".join(DOCS)
    parts = [decoded(corpus, s) for s in ("train", "valid", "test")]
    assert "".join(parts) == whole
    assert len(parts[0]) == int(0.8 * len(whole)) and len(parts[1]) == int(0.1 * len(whole))
    assert corpus.meta.extra["cut_from_train"] == ["valid", "test"]


def test_split_map_and_a_single_missing_split(tmp_path):
    import datasets

    saved = tmp_path / "dd"
    datasets.DatasetDict(
        {
            "main": datasets.Dataset.from_dict({"text": DOCS[:50]}),
            "heldout": datasets.Dataset.from_dict({"text": DOCS[50:]}),
        }
    ).save_to_disk(str(saved))
    split_map = hf.parse_split_map("train=main,test=heldout")
    corpus = prepare(tmp_path, saved, split_map=split_map)
    assert decoded(corpus, "test") == "\n".join(DOCS[50:])
    assert decoded(corpus, "train") + decoded(corpus, "valid") == "\n".join(DOCS[:50])
    assert corpus.meta.extra["cut_from_train"] == ["valid"]


def test_missing_field_unknown_name_and_bad_map_are_one_line_errors(tmp_path):
    import datasets

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"body": DOCS}).save_to_disk(str(saved))
    with pytest.raises(CorpusError, match="no field 'text' \\(fields: body\\)"):
        prepare(tmp_path, saved)
    with pytest.raises(CorpusError, match="field 'n' does not hold text"):
        numbers = tmp_path / "numbers"
        datasets.Dataset.from_dict({"n": list(range(9))}).save_to_disk(str(numbers))
        prepare(tmp_path, numbers, text_field="n")
    with pytest.raises(CorpusError, match="does not exist"):
        prepare(tmp_path, tmp_path / "absent")
    with pytest.raises(CorpusError, match="cannot load dataset 'surely-no-such-dataset-xyz'"):
        prepare(tmp_path, "surely-no-such-dataset-xyz")
    with pytest.raises(UsageError, match="--split-map"):
        hf.parse_split_map("dev=validation")
    result = runner.invoke(app, ["prepare", "hf", str(saved), "--text-field", "nope"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("error:") == 1 and "--text-field" in result.output


def test_cli_hf_with_sentencepiece(tmp_path):
    import datasets

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": DOCS * 3}).save_to_disk(str(saved))
    result = runner.invoke(
        app,
        [
            "prepare",
            "hf",
            str(saved),
            "--name",
            "docs",
            "--tokenizer",
            "sentencepiece",
            "--vocab-size",
            "300",
        ],
    )
    assert result.exit_code == 0, result.output
    from lstmlab.corpora.store import open_corpus

    corpus = open_corpus(tmp_path / "data", "docs")
    assert corpus.tokenizer.kind == "sentencepiece"
    text = "\n".join(DOCS * 3)
    assert sum(info.chars for info in corpus.meta.splits.values()) == len(text)
