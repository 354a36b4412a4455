"""Scoring text: totals equal eval's, per-character surprisal, TSV and HTML, dynamic evaluation."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from lstmlab.config import validate
from lstmlab.errors import UsageError, VocabularyError
from lstmlab.evaluate import evaluate
from lstmlab.model import build_model
from lstmlab.portable import load
from lstmlab.score import (
    colour,
    dynamic_scorer,
    score_text,
    spread_over_chars,
    token_nats,
    write_html,
    write_tsv,
)
from lstmlab.tokenizers import ByteTokenizer, CharTokenizer

from support import TINY_RECIPE, TINY_TEXT
from tiny_run import trained_tied_run

TEXT = "the quick brown fox\njumps over the lazy dog.\n"


@pytest.fixture
def tied_run(tmp_path_factory):
    return trained_tied_run(tmp_path_factory)


@pytest.fixture
def lm(tied_run):
    return load(tied_run)


def random_model(vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(validate(TINY_RECIPE).model, vocab_size).eval()


def test_total_bits_equal_eval_of_the_text_after_a_newline(lm):
    result = lm.score(TEXT)
    ids = np.array(lm.tokenizer.encode("\n" + TEXT))
    reference = evaluate(lm.module, ids, batch_size=1, bptt=7)
    assert result.total_bits == pytest.approx(reference.nats / math.log(2), rel=1e-6)
    assert result.bpc == pytest.approx(reference.bpc, rel=1e-6)  # eval sums in float32
    assert (result.chars, result.tokens) == (len(TEXT), len(TEXT))
    assert result.first_char == 0 and "followed a newline" in result.note


def test_windows_carry_the_state(lm):
    ids = np.array(lm.tokenizer.encode("\n" + TEXT * 3))
    whole = token_nats(lm.module, ids, window=4096)
    for window in (1, 7, 50):
        np.testing.assert_allclose(token_nats(lm.module, ids, window=window), whole, rtol=1e-5)


def test_per_char_bits_of_a_char_model_are_its_token_surprisals(lm):
    result = lm.score(TEXT)
    assert len(result.char_bits) == len(TEXT)
    assert result.char_bits.sum() == pytest.approx(result.total_bits, rel=1e-9)
    ids = np.array(lm.tokenizer.encode("\n" + TEXT))
    np.testing.assert_allclose(result.char_bits, token_nats(lm.module, ids) / math.log(2))
    assert not result.spread


def test_unknown_characters_name_the_first_ones_and_where(lm):
    with pytest.raises(
        VocabularyError, match=r"2 character\(s\) .* line 2 column 4: '€', '§'"
    ) as info:
        lm.score("the fox\nat € § ok")
    assert "the model knows:" in info.value.hint
    with pytest.raises(VocabularyError, match="'T'") as info:
        lm.score("The Fox")
    assert "lowercase" in info.value.hint


def test_empty_text_is_a_usage_error(lm):
    with pytest.raises(UsageError, match="empty"):
        lm.score("")


def test_without_a_newline_the_first_character_is_not_scored():
    tok = CharTokenizer(list("abc "))
    model = random_model(tok.vocab_size)
    result = score_text(model, tok, "abc cab")
    assert result.first_char == 1 and result.tokens == 6 and result.chars == 6
    assert len(result.char_bits) == 6
    assert result.char_bits.sum() == pytest.approx(result.total_bits)
    assert "first 1 character(s) have no prediction" in result.note
    with pytest.raises(UsageError, match="single symbol"):
        score_text(model, tok, "a")


def test_spread_over_chars():
    # a 3-char subword, a 1-char token, a lead byte and two continuation bytes
    bits = np.array([6.0, 1.0, 2.0, 0.5, 0.25])
    counts = np.array([3, 1, 1, 0, 0])
    np.testing.assert_allclose(spread_over_chars(bits, counts), [2, 2, 2, 1, 2.75])
    # continuation bytes before any character wait for the next one
    np.testing.assert_allclose(spread_over_chars(np.array([1.0, 2.0]), np.array([0, 1])), [3.0])


def test_byte_model_gives_one_row_per_character():
    text = "naïve café ✓\n"
    model = random_model(256)
    result = score_text(model, ByteTokenizer(), text)
    assert result.chars == len(text.encode()) == result.tokens  # bpc counts bytes, as eval does
    assert len(result.char_bits) == len(text)
    assert result.char_bits.sum() == pytest.approx(result.total_bits)


def test_subword_bits_are_spread_over_each_tokens_characters():
    from lstmlab.subword import SubwordOptions, train_sentencepiece

    tok = train_sentencepiece(TINY_TEXT, SubwordOptions(vocab_size=300))
    text = "the quick brown fox jumps.\nover é"
    model = random_model(tok.vocab_size)
    result = score_text(model, tok, text)
    assert result.spread and "spread evenly" in result.note
    assert result.chars == len(text) and len(result.char_bits) == len(text)
    assert result.char_bits.sum() == pytest.approx(result.total_bits)
    ids = tok.encode(text)
    first_len = int(tok.char_lengths()[ids[0]])
    assert first_len > 1  # "the" or similar is one piece
    assert np.ptp(result.char_bits[:first_len]) == pytest.approx(0.0, abs=1e-12)


def test_tsv_has_a_header_escapes_and_one_row_per_char(lm, tmp_path):
    text = "a\tb\\c\nd"
    with pytest.raises(VocabularyError):
        lm.score(text)  # the tiny vocabulary has no tab or backslash
    tok = CharTokenizer(list("abcd\t\\\n"))
    result = score_text(random_model(tok.vocab_size), tok, text)
    lines = write_tsv(result, tmp_path / "x.tsv", source="doc.txt").read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    assert "doc.txt" in header[0] and f"bpc {result.bpc:.6f}" in header[1]
    assert "followed a newline" in header[2]
    rows = [line.split("\t") for line in lines[len(header) :]]
    assert rows[0] == ["index", "char", "bits"]
    assert [r[1] for r in rows[1:]] == ["a", "\\t", "b", "\\\\", "c", "\\n", "d"]
    assert [int(r[0]) for r in rows[1:]] == list(range(len(text)))
    assert sum(float(r[2]) for r in rows[1:]) == pytest.approx(result.total_bits, abs=1e-3)


def test_colour_scale_runs_from_light_to_dark():
    light = [sum(colour(k / 10)) for k in range(11)]
    assert all(a > b for a, b in zip(light, light[1:]))
    assert colour(-1) == colour(0) and colour(5) == colour(1)


def test_html_is_self_contained_with_a_tooltip_per_character(lm, tmp_path):
    result = lm.score(TEXT)
    page = write_html(result, tmp_path / "x.html", title="doc").read_text()
    assert f"<title>{result.bpc:.3f} bits per character - doc</title>" in page
    assert "<script" not in page and "http" not in page and "@import" not in page
    assert page.count("<span class") + page.count("<span style") >= len(TEXT)
    assert page.count(' bits"') == len(TEXT)
    assert f"0: 't' {result.char_bits[0]:.2f} bits" in page
    assert "\u21b5" in page and "\u00b7" in page  # line ends and spaces are visible
    assert "linear-gradient" in page  # the legend


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed here")
def test_html_renders_in_headless_chromium(lm, tmp_path):
    image = pytest.importorskip("PIL.Image", reason="Pillow is needed to read the screenshot")
    page = write_html(lm.score(TEXT * 4), tmp_path / "page.html", title="doc")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1000,600",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = image.open(shot).convert("RGB")
    assert pixels.size == (1000, 600)
    colours = pixels.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # text on coloured backgrounds, not blank
    # the scale's colours are on the page: some pixel is near the legend's darkest end
    dark = colour(1.0)
    assert any(max(abs(c[i] - dark[i]) for i in range(3)) < 12 for _, c in colours), (
        "the legend's dark end is not visible"
    )


def test_dynamic_scoring_adapts_and_restores_the_weights(lm):
    before = {k: v.clone() for k, v in lm.module.state_dict().items()}
    evaluator = dynamic_scorer(lm.module, lm.tokenizer, lm.config)
    text = TINY_TEXT[:600]
    static = score_text(lm.module, lm.tokenizer, text)
    dynamic = score_text(lm.module, lm.tokenizer, text, dynamic=evaluator)
    assert dynamic.dynamic and "dynamic evaluation" in dynamic.note
    assert dynamic.tokens == static.tokens and dynamic.chars == static.chars
    assert dynamic.total_bits != pytest.approx(static.total_bits, rel=1e-6)
    assert dynamic.char_bits.sum() == pytest.approx(dynamic.total_bits)
    # the first segment is scored before any update, so it matches the static score
    n = lm.config.eval.dynamic.segment_len
    np.testing.assert_allclose(dynamic.char_bits[:n], static.char_bits[:n], rtol=1e-5)
    for key, value in lm.module.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_dynamic_without_the_training_corpus_is_a_usage_error(lm, tmp_path):
    cfg = lm.config.model_copy(
        update={"data": lm.config.data.model_copy(update={"data_dir": tmp_path / "empty"})}
    )
    with pytest.raises(UsageError, match="needs the model's training corpus 'tiny'") as info:
        dynamic_scorer(lm.module, lm.tokenizer, cfg)
    assert (
        info.value.exit_code == 2 and "lstmlab prepare text FILE... --name tiny" in info.value.hint
    )
