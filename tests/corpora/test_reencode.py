"""`prepare ... --tokenizer sentencepiece`: any corpus re-encoded, trained on train only, chars exact."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from lstmlab.checkpoint import load_for_inference
from lstmlab.cli.app import app
from lstmlab.config import ModelConfig
from lstmlab.corpora import PrepareRequest, prepare_corpus
from lstmlab.evaluate import evaluate
from lstmlab.model import build_model
from lstmlab.subword import MODEL_FILE, SubwordOptions

from support import TINY_RECIPE, TINY_TEXT

runner = CliRunner()
TEST_ONLY_WORD = "zyxwvutsrq"


def _prepare_text(tmp_path, name="book"):
    path = tmp_path / "book.txt"
    # 90% train / 5% / 5%: the odd word sits only in the test part
    path.write_text(TINY_TEXT + (f"{TEST_ONLY_WORD} " * 20), encoding="utf-8")
    request = PrepareRequest(data_dir=tmp_path / "data", inputs=(str(path),), name=name)
    return path, prepare_corpus("text", request, SubwordOptions(vocab_size=300))


def test_text_corpus_reencoded_exactly(tmp_path):
    path, corpus = _prepare_text(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert corpus.name == "book" and corpus.tokenizer.kind == "sentencepiece"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["book"]  # no staging left
    decoded = "".join(
        corpus.tokenizer.decode(corpus.tokens(s).tolist()) for s in ("train", "valid", "test")
    )
    assert decoded == text
    train_end = int(len(text) * 0.9)
    assert corpus.meta.splits["train"].chars == train_end
    assert sum(info.chars for info in corpus.meta.splits.values()) == len(text)
    assert (corpus.path / MODEL_FILE).read_bytes() == corpus.tokenizer.model_proto
    assert corpus.meta.extra["base_tokenizer"] == "char"


def test_trained_on_the_train_split_only(tmp_path):
    _, corpus = _prepare_text(tmp_path)
    sp = corpus.tokenizer.sp
    pieces = [sp.id_to_piece(i) for i in range(sp.vocab_size())]
    assert not any("zyx" in p or "wvu" in p for p in pieces)
    assert any("quick" in p or "qu" in p for p in pieces)


def test_evaluation_divides_by_the_characters_predicted(tmp_path):
    _, corpus = _prepare_text(tmp_path)
    cfg = ModelConfig.model_validate(
        {"embed_dim": 4, "num_layers": 1, "cell": {"kind": "lstm", "hidden_dim": 6}}
    )
    model = build_model(cfg, corpus.vocab_size)
    tokens = corpus.tokens("valid")
    lengths = corpus.tokenizer.char_lengths()
    res = evaluate(model, tokens, batch_size=2, bptt=8, char_lengths=lengths)
    first = int(lengths[tokens[0]])
    assert (
        res.chars == corpus.meta.splits["valid"].chars - first
    )  # every character after the first token
    assert res.bpc == pytest.approx(res.nats / (math.log(2) * res.chars))


def test_cli_prepare_train_eval_sample_with_sentencepiece(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TINY_TEXT, encoding="utf-8")
    args = ["prepare", "text", str(book), "--name", "tiny", "--tokenizer", "sentencepiece"]
    result = runner.invoke(app, [*args, "--vocab-size", "300", "--model-type", "bpe"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "data" / "tiny" / "meta.json").read_text())
    assert meta["tokenizer"]["kind"] == "sentencepiece"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump({**TINY_RECIPE, "data": {"corpus": "tiny", "tokenizer": "sentencepiece"}})
    )
    run = tmp_path / "runs" / "sp"
    result = runner.invoke(app, ["train", str(recipe), "--run-dir", str(run), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(run), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    test = json.loads((run / "eval.json").read_text())["splits"]["test"]
    assert test["chars"] > test["tokens"]  # subwords: fewer predictions than characters
    # the checkpoint alone rebuilds the tokenizer: remove the corpus, sample still works
    for f in (tmp_path / "data" / "tiny").iterdir():
        f.unlink()
    _, tokenizer, _, _ = load_for_inference(run)
    assert tokenizer.decode(tokenizer.encode("the fox\n")) == "the fox\n"
    result = runner.invoke(app, ["sample", str(run), "--length", "20", "--device", "cpu"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--tokenizer", "wordpiece"], "--tokenizer"),
        (["--vocab-size", "500"], "sentencepiece only"),
        (["--tokenizer", "sentencepiece", "--vocab-size", "5"], "--vocab-size"),
    ],
)
def test_bad_tokenizer_options_are_one_line_errors(tmp_path, extra, needle):
    book = tmp_path / "book.txt"
    book.write_text(TINY_TEXT, encoding="utf-8")
    result = runner.invoke(app, ["prepare", "text", str(book), *extra])
    assert result.exit_code == 2
    assert needle in result.output and "Traceback" not in result.output
    assert not list((tmp_path / "data").glob(".subword-*"))  # no staging folder left behind
