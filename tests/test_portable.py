"""Export folders (safetensors, recipe, tokenizer, model card) and loading every model source."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from lstmlab.errors import CheckpointError, UsageError
from lstmlab.portable import (
    ALIASES_KEY,
    MARKER,
    export_run,
    load,
    load_weights,
    save_weights,
    split_shared,
)

from tiny_run import copy_run, trained_tied_run


@pytest.fixture
def tied_run(tmp_path_factory):
    return trained_tied_run(tmp_path_factory)


def test_split_shared_stores_a_tied_tensor_once_and_round_trips(tmp_path):
    emb = torch.randn(5, 3)
    state = {"embedding.weight": emb, "head.weight": emb, "head.bias": torch.zeros(5)}
    state["other"] = emb.clone()  # equal values, own memory: stored on its own
    stored, aliases = split_shared(state)
    assert set(stored) == {"embedding.weight", "head.bias", "other"}
    assert aliases == {"head.weight": "embedding.weight"}
    save_weights(state, tmp_path / "w.safetensors")
    back = load_weights(tmp_path / "w.safetensors")
    assert set(back) == set(state)
    assert back["head.weight"] is back["embedding.weight"]
    torch.testing.assert_close(back["other"], emb)


def test_export_writes_a_self_contained_folder(tied_run, tmp_path):
    out = export_run(tied_run, tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.yaml",
        "lstmlab-export.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())  # noqa: SIM118
        aliases = json.loads(f.metadata()[ALIASES_KEY])
    assert "embedding.weight" in names and "head.weight" not in names
    assert aliases == {"head.weight": "embedding.weight"}
    marker = json.loads((out / MARKER).read_text())
    assert marker["format_version"] == 1 and marker["step"] == 4
    assert json.loads((out / "tokenizer.json").read_text())["kind"] == "char"
    card = (out / "README.md").read_text()
    best = min(
        json.loads(line)["bpc"]
        for line in (tied_run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line).get("kind") == "valid"
    )
    for needle in ("library_name: lstmlab", "| cell | lstm |", "tied to the softmax", "| tiny |"):
        assert needle in card
    assert f"| best valid | {best:.4f} |" in card
    assert "| training step | 4 |" in card
    assert f'lstmlab.load("{out}")' in card and f"lstmlab sample {out}" in card
    assert "| train | 5904 |" in card  # split checksums from the corpus manifest


def test_model_card_reports_test_bpc_from_eval_json(tied_run, tmp_path):
    run = copy_run(tied_run, tmp_path / "run")
    (run / "eval.json").write_text(json.dumps({"splits": {"test": {"bpc": 3.21}}}))
    card = (export_run(run, tmp_path / "export") / "README.md").read_text()
    assert "| test (lstmlab eval) | 3.2100 | eval.json |" in card


def test_export_loads_without_the_run_and_keeps_the_tie(tied_run, tmp_path):
    run = copy_run(tied_run, tmp_path / "run")
    out = export_run(run, tmp_path / "export")
    shutil.rmtree(run)
    exported = load(out)
    original = load(tied_run)
    head, emb = exported.module.head.weight, exported.module.embedding.weight
    assert head is emb  # still one parameter: fine-tuning moves both
    for a, b in zip(exported.module.state_dict().values(), original.module.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_every_source_loads_the_same_model(tied_run, tmp_path):
    out = export_run(tied_run, tmp_path / "export")
    sources = [tied_run, tied_run / "checkpoints" / "best.pt", out, str(out)]
    handles = [load(s) for s in sources]
    texts = {h.generate(prime="the ", length=30, seed=3) for h in handles}
    bits = {round(h.score("the lazy dog.").total_bits, 9) for h in handles}
    assert len(texts) == 1 and len(bits) == 1
    assert len(texts.pop()) == 30
    h = handles[2]
    assert h.config.model.cell.kind == "lstm" and h.tokenizer.vocab_size == h.module.vocab_size
    assert isinstance(h.module, torch.nn.Module) and "lstm" in repr(h)


def test_generate_is_reproducible_with_a_seed(tied_run):
    lm = load(tied_run)
    assert lm.generate(length=50, seed=7) == lm.generate(length=50, seed=7)
    assert lm.generate(length=50, seed=7) != lm.generate(length=50, seed=8)


def test_export_refuses_a_folder_that_is_not_an_export(tied_run, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not lose me")
    for force in (False, True):
        with pytest.raises(UsageError, match="not an lstmlab export") as info:
            export_run(tied_run, out, force=force)
        assert info.value.exit_code == 2
    assert (out / "thesis.tex").read_text() == "do not lose me"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_force_replaces_an_earlier_export_only(tied_run, tmp_path):
    out = export_run(tied_run, tmp_path / "export")
    (out / "stale.txt").write_text("from an old export")
    with pytest.raises(UsageError, match="already holds an lstmlab export"):
        export_run(tied_run, out)
    export_run(tied_run, out, force=True, checkpoint="last")
    assert not (out / "stale.txt").exists()
    assert json.loads((out / MARKER).read_text())["source_checkpoint"].endswith("last.pt")
    assert not list(tmp_path.glob(".export.partial-*"))


def test_exporting_an_export_is_refused(tied_run, tmp_path):
    out = export_run(tied_run, tmp_path / "export")
    with pytest.raises(UsageError, match="already an export"):
        export_run(out, tmp_path / "again")


def test_damaged_exports_are_one_line_errors(tied_run, tmp_path):
    out = export_run(tied_run, tmp_path / "export")
    (out / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load(out)
    out = export_run(tied_run, out, force=True)
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**marker, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        load(out)
    (out / MARKER).unlink()
    with pytest.raises(CheckpointError, match="not an lstmlab export"):
        load(out)


def test_sentencepiece_model_is_its_own_file_in_the_export(tmp_path):
    from lstmlab.portable import _read_tokenizer, _write_tokenizer
    from lstmlab.subword import SubwordOptions, train_sentencepiece

    from support import TINY_TEXT

    tok = train_sentencepiece(TINY_TEXT, SubwordOptions(vocab_size=300))
    _write_tokenizer(tok.to_meta(), tmp_path)
    meta = json.loads((tmp_path / "tokenizer.json").read_text())
    assert meta == {"kind": "sentencepiece", "file": "spm.model"}
    assert (tmp_path / "spm.model").read_bytes() == tok.model_proto
    back = _read_tokenizer(tmp_path)
    assert back.to_meta() == tok.to_meta()
    assert back.decode(back.encode("the quick fox\n")) == "the quick fox\n"
    (tmp_path / "spm.model").unlink()
    with pytest.raises(CheckpointError, match="spm.model, which is missing"):
        _read_tokenizer(tmp_path)


def test_missing_source_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_checkpoint_may_be_a_path(tied_run, tmp_path):
    last = tied_run / "checkpoints" / "last.pt"
    by_path = load(tied_run, checkpoint=str(last))
    assert by_path.source == last
    assert by_path.score("the dog.").total_bits == load(last).score("the dog.").total_bits
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tied_run, checkpoint=str(tmp_path / "gone.pt"))


def test_sentencepiece_checkpoint_exports_and_scores_the_same(tmp_path):
    from lstmlab.checkpoint import save_checkpoint
    from lstmlab.config import validate
    from lstmlab.model import build_model
    from lstmlab.subword import SubwordOptions, train_sentencepiece

    from support import TINY_RECIPE, TINY_TEXT

    tok = train_sentencepiece(TINY_TEXT, SubwordOptions(vocab_size=300))
    cfg = validate(TINY_RECIPE)
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.vocab_size)
    ckpt = save_checkpoint(
        tmp_path / "run" / "checkpoints" / "best.pt",
        {
            "config": cfg.to_dict(),
            "tokenizer": tok.to_meta(),
            "model": model.state_dict(),
            "train_state": {"step": 0},
            "num_parameters": model.num_parameters(),
        },
    )
    out = export_run(ckpt, tmp_path / "export")
    assert (out / "spm.model").read_bytes() == tok.model_proto
    assert "| tokenizer | sentencepiece |" in (out / "README.md").read_text()
    text = "the lazy zebra jumps.\n"
    assert load(out).score(text).total_bits == pytest.approx(load(ckpt).score(text).total_bits)
