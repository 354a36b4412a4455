"""bpc over a split equals the brute-force sum of per-token losses, whatever the batching."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lstmlab.checkpoint import load_for_inference
from lstmlab.config import ModelConfig
from lstmlab.corpora.store import write_corpus
from lstmlab.errors import (
    CheckpointError,
    CorpusError,
    LstmlabError,
    UsageError,
    VocabularyError,
)
from lstmlab.evaluate import (
    TEMPERATURE_GRID,
    EvalResult,
    EvaluationStopped,
    evaluate,
    evaluate_run,
    evaluate_temperatures,
    pow2,
    rows_for_rank,
    tune_temperature,
    write_eval,
)
from lstmlab.model import build_model
from lstmlab.tokenizers import CharTokenizer

from fake_checkpoints import corpus_record, make_checkpoint, tiny_corpus_at
from support import TINY_TEXT


def _model():
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {"embed_dim": 5, "num_layers": 1, "cell": {"kind": "lstm", "hidden_dim": 7}}
    )
    return build_model(cfg, vocab_size=11).eval()


def test_streams_and_remainder_equal_one_long_pass():
    model = _model()
    tokens = np.random.default_rng(0).integers(0, 11, size=203)
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(tokens[None, :-1]), model.initial_state(1))
        nats = F.cross_entropy(logits[0], torch.as_tensor(tokens[1:]), reduction="sum").item()
    one = evaluate(model, tokens, batch_size=1, bptt=17)
    assert one.tokens == 202 and abs(one.nats - nats) < 1e-3
    assert abs(one.bpc - nats / (math.log(2) * 202)) < 1e-6
    assert abs(one.perplexity - 2**one.bpc) < 1e-9
    many = evaluate(model, tokens, batch_size=6, bptt=9)
    assert many.tokens == 202  # the remainder is scored too


def test_char_lengths_change_the_denominator_only():
    model = _model()
    tokens = np.random.default_rng(1).integers(0, 11, size=50)
    plain = evaluate(model, tokens, batch_size=2, bptt=8)
    doubled = evaluate(model, tokens, batch_size=2, bptt=8, char_lengths=np.full(11, 2))
    assert doubled.chars == 2 * plain.chars
    assert abs(doubled.bpc - plain.bpc / 2) < 1e-9


def test_max_tokens_caps_the_work():
    model = _model()
    tokens = np.random.default_rng(2).integers(0, 11, size=500)
    assert evaluate(model, tokens, batch_size=3, bptt=8, max_tokens=100).tokens == 100


def test_temperatures_in_one_pass_equal_separate_passes_and_brute_force():
    model = _model()
    tokens = np.random.default_rng(3).integers(0, 11, size=120)
    many = evaluate_temperatures(model, tokens, (0.8, 0.9, 1.0), batch_size=3, bptt=10)
    for t in (0.8, 0.9, 1.0):
        assert (
            abs(many[t].nats - evaluate(model, tokens, batch_size=3, bptt=10, temperature=t).nats)
            < 1e-4
        )
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(tokens[None, :-1]), model.initial_state(1))
        nats = F.cross_entropy(logits[0] / 0.8, torch.as_tensor(tokens[1:]), reduction="sum").item()
    one_stream = evaluate_temperatures(model, tokens, (0.8,), batch_size=1, bptt=10)
    assert abs(one_stream[0.8].nats - nats) < 1e-3


def test_tune_temperature_picks_the_best_valid_temperature():
    model = _model()
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # an over-confident model: a temperature above 1 would help
    tokens = np.random.default_rng(4).integers(0, 11, size=150)
    assert (
        TEMPERATURE_GRID[0] == 0.8 and TEMPERATURE_GRID[-1] == 1.0 and len(TEMPERATURE_GRID) == 11
    )
    best, results = tune_temperature(model, tokens, batch_size=2, bptt=16)
    assert set(results) == set(TEMPERATURE_GRID)
    assert results[best].bpc == min(r.bpc for r in results.values())
    assert best == 1.0  # bpc falls monotonically towards the largest temperature here
    best_low, _ = tune_temperature(model, tokens, grid=(0.5, 0.7), batch_size=2, bptt=16)
    assert best_low == 0.7


# ---------------------------------------------------------------- rows, should_stop, overflow


def test_row_blocks_sum_to_the_one_process_figures():
    """DDP validation: ranks scoring disjoint row blocks add up to exactly one process's totals."""
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {"embed_dim": 5, "num_layers": 2, "cell": {"kind": "lstm", "hidden_dim": 7}}
    )
    model = build_model(cfg, vocab_size=11).eval()
    tokens = np.random.default_rng(5).integers(0, 11, size=1003)  # 1002 pairs: 6 x 167, no rest
    for size in (1003, 1000):  # 999 pairs = 6 x 166 + 3: a remainder continuing stream 5
        full = evaluate_temperatures(model, tokens[:size], (0.9, 1.0), batch_size=6, bptt=9)
        for blocks in ([slice(0, 3), slice(3, 6)], [slice(0, 2), slice(2, 5), slice(5, None)]):
            parts = [
                evaluate_temperatures(
                    model, tokens[:size], (0.9, 1.0), batch_size=6, bptt=9, rows=rows
                )
                for rows in blocks
            ]
            for t in (0.9, 1.0):
                assert sum(p[t].tokens for p in parts) == full[t].tokens == size - 1
                assert sum(p[t].chars for p in parts) == full[t].chars
                # float32 kernels may round a row differently with another batch size: 1e-9
                assert math.isclose(sum(p[t].nats for p in parts), full[t].nats, rel_tol=1e-9)
    # a block past the streams (more ranks than rows) scores nothing
    empty = evaluate(model, tokens, batch_size=6, bptt=9, rows=slice(6, 8))
    assert empty.tokens == 0 and empty.nats == 0.0
    # the remainder goes with the block holding the last stream only
    head = evaluate(model, tokens[:1000], batch_size=6, bptt=9, rows=slice(0, 5))
    assert head.tokens == 5 * 166


def test_should_stop_ends_evaluation_within_one_window():
    model = _model().train()
    tokens = np.random.default_rng(6).integers(0, 11, size=400)
    seen = []
    original = model.forward

    def counting(x, state):
        seen.append(x.shape[1])
        return original(x, state)

    model.forward = counting
    asked = []

    def stop_on_third() -> bool:
        asked.append(1)
        return len(asked) == 3

    with pytest.raises(EvaluationStopped):
        evaluate(model, tokens, batch_size=2, bptt=10, should_stop=stop_on_third)
    assert len(seen) == 2  # asked before every window: the third never ran
    assert model.training  # the mode is restored even when stopped
    assert not issubclass(EvaluationStopped, LstmlabError)


def test_a_diverged_model_has_infinite_perplexity_not_an_overflow():
    huge = EvalResult(nats=1e6, tokens=10, chars=10)  # finite bpc ~ 144270
    assert math.isfinite(huge.bpc) and huge.perplexity == math.inf
    assert huge.to_dict()["perplexity"] == math.inf and f"{huge.perplexity:.4f}" == "inf"
    assert pow2(3.0) == 8.0


# ---------------------------------------------------------------- evaluate_run and write_eval


@pytest.fixture
def run_on_corpus(tmp_path, monkeypatch):
    """A run folder whose best.pt records an absolute corpus path; cwd is elsewhere, no data env."""
    monkeypatch.delenv("LSTMLAB_DATA_DIR", raising=False)
    corpus = tiny_corpus_at(tmp_path / "data")
    run = tmp_path / "runs" / "r"
    make_checkpoint(run, corpus, step=6)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # ./data does not exist here
    return run, corpus


def test_evaluate_run_finds_the_corpus_from_any_directory(run_on_corpus):
    run, corpus = run_on_corpus
    report = evaluate_run(run, splits=("valid", "test"), tune_temperature=False)
    loaded = load_for_inference(run)
    assert report.checkpoint == (run / "checkpoints" / "best.pt").resolve()
    assert (report.which, report.step, report.sha256) == ("best", 6, loaded.sha256)
    assert report.corpus_name == "tiny" and report.corpus_path == corpus.path.resolve()
    assert report.corpus_splits == {k: v.sha256 for k, v in corpus.meta.splits.items()}
    test = report.splits["test"]
    direct = evaluate(
        loaded.model,
        corpus.tokens("test"),
        batch_size=3,
        bptt=32,  # TINY_RECIPE's eval
    )
    assert test.result == direct and test.seconds >= 0 and test.dynamic is None
    data = report.to_json()
    assert set(data) == {"checkpoint", "which", "step", "sha256", "corpus", "splits", "time"}
    assert data["splits"]["valid"]["bpc"] == report.splits["valid"].result.bpc


def test_evaluate_run_dynamic_and_tuned_temperature(run_on_corpus):
    run, _ = run_on_corpus
    report = evaluate_run(
        run,
        dynamic=True,
        dynamic_overrides={"lr": 1e-3, "ms_tokens": 400, "decay": None},
        tune_temperature=True,
    )
    test = report.splits["test"]
    assert test.dynamic.tokens == test.result.tokens and test.dynamic.chars == test.result.chars
    assert test.dynamic.bpc != test.result.bpc  # the weights adapted while reading
    assert test.dynamic_settings["lr"] == 1e-3 and test.dynamic_settings["ms_tokens"] == 400
    assert test.dynamic_settings["segment_len"] == 5  # the recipe's eval.dynamic default
    dyn = report.to_json()["splits"]["test"]["dynamic"]
    assert dyn["gain_bpc"] == pytest.approx(test.result.bpc - test.dynamic.bpc)
    tuned = report.tuned
    assert set(tuned.valid_bpc) == set(TEMPERATURE_GRID)
    assert tuned.valid_bpc[tuned.temperature] == min(tuned.valid_bpc.values())
    assert tuned.test_bpc_untuned == pytest.approx(test.result.bpc, abs=1e-6)
    assert report.to_json()["tuned_temperature"]["temperature"] == tuned.temperature


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"lr": math.nan}, "--dyn-lr"),
        ({"lr": math.inf}, "--dyn-lr"),
        ({"decay": 2.0}, "--dyn-decay"),
        ({"segment_len": 0}, "--segment-len"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_dynamic_settings_are_usage_errors(run_on_corpus, overrides, needle):
    run, _ = run_on_corpus
    with pytest.raises(UsageError, match=needle):
        evaluate_run(run, dynamic=True, dynamic_overrides=overrides)


def test_dynamic_settings_without_dynamic_and_bad_arguments_are_refused(run_on_corpus):
    run, _ = run_on_corpus
    with pytest.raises(UsageError, match="--dynamic"):
        evaluate_run(run, dynamic_overrides={"lr": 1e-3})
    with pytest.raises(UsageError, match="batch-size"):
        evaluate_run(run, batch_size=0)
    with pytest.raises(UsageError, match="split"):
        evaluate_run(run, splits=("train",))


def test_a_corpus_changed_under_the_same_name_is_refused(run_on_corpus, tmp_path):
    run, corpus = run_on_corpus
    tiny_corpus_at(tmp_path / "data", text=TINY_TEXT[::-1])  # same symbols, other text
    with pytest.raises(CorpusError) as err:
        evaluate_run(run)
    assert "changed since" in err.value.message and "lstmlab prepare" in err.value.hint
    assert "--data-dir" in err.value.hint


def test_old_checkpoints_without_checksums_get_the_vocabulary_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus_at(tmp_path / "data")
    run = tmp_path / "old"
    make_checkpoint(run, corpus, record=corpus_record(corpus, splits=False))
    tiny_corpus_at(tmp_path / "data", text=TINY_TEXT[::-1])
    assert evaluate_run(run).splits["test"].result.tokens > 0  # same vocabulary: evaluated
    other = tmp_path / "other"
    make_checkpoint(other, corpus, record=None)  # older still: no corpus record at all
    text = "".join(sorted(set(TINY_TEXT)))[:-3] * 300  # three symbols fewer
    tiny = CharTokenizer(sorted(set(text)))
    ids = np.array(tiny.encode(text))
    write_corpus(
        tmp_path / "data", "tiny", tiny, {s: ids for s in ("train", "valid", "test")}, replace=True
    )
    with pytest.raises(VocabularyError, match="another vocabulary"):
        evaluate_run(other, data_dir=tmp_path / "data")


def test_data_dir_wins_over_the_recorded_corpus(run_on_corpus, tmp_path):
    run, _ = run_on_corpus
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="not prepared"):
        evaluate_run(run, data_dir=tmp_path / "empty")


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: [1, 2],
        lambda m: "meta",
        lambda m: {**m, "splits": [1, 2]},
        lambda m: {**m, "splits": {**m["splits"], "test": {"tokens": None}}},
        lambda m: {**m, "splits": {**m["splits"], "test": {**m["splits"]["test"], "tokens": None}}},
        lambda m: {**m, "dtype": "no-such-dtype"},
        lambda m: {**m, "dtype": 7},
        lambda m: {k: v for k, v in m.items() if k != "tokenizer"},
        lambda m: {**m, "tokenizer": "char"},
        lambda m: {**m, "tokenizer": {"kind": "char"}},
        lambda m: {**m, "splits": {**m["splits"], "test": 5}},
    ],
)
def test_a_hand_damaged_meta_json_is_a_corpus_error(run_on_corpus, damage):
    run, corpus = run_on_corpus
    meta_path = corpus.path / "meta.json"
    meta_path.write_text(json.dumps(damage(json.loads(meta_path.read_text()))))
    with pytest.raises(LstmlabError) as err:
        evaluate_run(run)
    assert "\n" not in err.value.message


def test_checkpoint_best_last_or_path_and_never_a_fallback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus_at(tmp_path / "data")
    run = tmp_path / "run"
    make_checkpoint(run, corpus, which="last", step=4)
    with pytest.raises(CheckpointError) as err:
        evaluate_run(run)  # best asked for, only last exists: no silent substitute
    assert "best.pt" in err.value.message and "last.pt" in err.value.message
    assert err.value.hint == "pass --checkpoint last"
    assert evaluate_run(run, checkpoint="last").step == 4
    as_path = evaluate_run(
        tmp_path / "elsewhere-ignored", checkpoint=str(run / "checkpoints" / "last.pt")
    )
    assert as_path.which == "last" and as_path.step == 4
    assert evaluate_run(run, checkpoint="checkpoints/last.pt").step == 4  # inside the run folder
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate_run(run, checkpoint="checkpoints/step-9.pt")
    (run / "checkpoints" / "last.pt").unlink()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        evaluate_run(run, checkpoint="last")


def test_write_eval_keeps_one_checkpoint_per_file(run_on_corpus):
    run, corpus = run_on_corpus
    out = write_eval(run, evaluate_run(run, splits=("valid",)))
    first = json.loads(out.read_text())
    assert out == run / "eval.json" and set(first["splits"]) == {"valid"}
    assert first["step"] == 6 and first["which"] == "best" and len(first["sha256"]) == 64
    assert first["corpus"] == {
        "name": "tiny",
        "splits": {k: v.sha256 for k, v in corpus.meta.splits.items()},
    }
    write_eval(run, evaluate_run(run, splits=("test",), tune_temperature=True))
    merged = json.loads(out.read_text())  # same checkpoint: the splits merge
    assert set(merged["splits"]) == {"valid", "test"} and "tuned_temperature" in merged
    assert merged["splits"]["valid"] == first["splits"]["valid"]
    write_eval(run, evaluate_run(run, splits=("test",)))
    assert "tuned_temperature" in json.loads(out.read_text())  # still the same model's
    make_checkpoint(run, corpus, step=9, seed=1)  # a newer best: other weights
    write_eval(run, evaluate_run(run, splits=("test",)))
    replaced = json.loads(out.read_text())
    assert replaced["step"] == 9 and set(replaced["splits"]) == {"test"}
    assert "tuned_temperature" not in replaced and replaced["sha256"] != first["sha256"]


@pytest.mark.parametrize(
    "foreign", ["{not json", "[1, 2]", '{"splits": 3}', '{"sha256": null}', "\xff\xfe", ""]
)
def test_write_eval_replaces_a_foreign_eval_json(run_on_corpus, foreign):
    run, _ = run_on_corpus
    (run / "eval.json").write_text(foreign, encoding="latin-1")
    out = write_eval(run, evaluate_run(run))
    data = json.loads(out.read_text())
    assert set(data["splits"]) == {"test"} and data["step"] == 6
    assert not list(run.glob(".eval.json.*"))  # no temporary left behind


def test_rows_for_rank_partitions_the_streams():
    for tokens, batch, world in ((1003, 6, 2), (1003, 6, 4), (1003, 16, 3), (4, 16, 5), (2, 8, 2)):
        n = max(1, min(batch, tokens - 1))
        blocks = [rows_for_rank(tokens, batch, r, world) for r in range(world)]
        assert [i for b in blocks for i in range(n)[b]] == list(range(n))
        sizes = [len(range(n)[b]) for b in blocks]
        assert max(sizes) - min(sizes) <= 1
