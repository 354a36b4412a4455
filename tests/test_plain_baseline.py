"""recipes/small/plain-lstm.yaml trains step for step like the hand-written benchmarks/plain_lstm.py.

lstmlab's `fit` and the script's loop start from the same weights and read the
same token stream, each batching it with its own code; their per-step losses
must agree. A difference in lstmlab's batching, carried state, epoch restart,
clipping, loss or Adam settings would show within a few steps.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from lstmlab.config import load_recipe
from lstmlab.model import build_model
from lstmlab.runs import read_metrics
from lstmlab.train import fit

from support import REPO

PLAIN = REPO / "recipes" / "small" / "plain-lstm.yaml"


def _plain_script():
    spec = importlib.util.spec_from_file_location(
        "plain_lstm", REPO / "benchmarks" / "plain_lstm.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_is_the_scripts_configuration():
    cfg, script = load_recipe(PLAIN), _plain_script()
    hand = script.CharLSTM(50)
    assert cfg.model.num_layers == 1 and cfg.model.cell.kind == "lstm"
    assert (cfg.model.embed_dim, cfg.model.cell.hidden_dim) == (128, 512)
    assert build_model(cfg.model, 50).num_parameters() == 1_346_866
    assert sum(p.numel() for p in hand.parameters()) == 1_346_866
    assert (cfg.model.embed_init.dist, cfg.model.embed_init.scale) == ("normal", 1.0)
    assert (cfg.train.batch_size, cfg.train.bptt, cfg.train.grad_clip) == (32, 128, 1.0)
    opt = cfg.train.optimizer
    assert (opt.name, opt.lr, opt.weight_decay, cfg.train.schedule.name) == (
        "adam",
        2e-3,
        0.0,
        "constant",
    )
    probabilities = cfg.model.dropout.model_dump(exclude={"mask"}).values()
    assert all(p == 0.0 for p in probabilities) and cfg.train.drop_state == 0.0


def test_plain_recipe_tracks_a_hand_written_lstm_loop(tmp_path, tiny_corpus):
    steps = 20
    # Small sizes; 8 streams of 725 tokens in windows of 64: step 12 is a short last window
    # and step 13 restarts the streams from zero state, so the epoch edge is compared too.
    cfg = load_recipe(
        PLAIN,
        [
            "data.corpus=tiny",
            "data.tokenizer=null",
            "model.embed_dim=8",
            "model.cell.hidden_dim=16",
            "train.batch_size=8",
            "train.bptt=64",
            "train.grad_clip=0.05",  # binds at these sizes (1.0 would not): clipping is compared
            "train.max_tokens=null",
            f"train.max_steps={steps}",
            "train.log_every=1",
            "train.eval_every=1000",
        ],
    )
    fit(cfg, tmp_path / "run")
    records = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert [r["epoch"] for r in records].count(1) == steps - 12

    # The same initial weights (fit seeds, then builds), copied into nn.Embedding/nn.LSTM/nn.Linear.
    torch.manual_seed(cfg.seed)
    ours = build_model(cfg.model, tiny_corpus.vocab_size)
    script = _plain_script()
    hand = script.CharLSTM(tiny_corpus.vocab_size, embed=8, hidden=16)
    cell = ours.layers[0]
    with torch.no_grad():
        hand.embedding.weight.copy_(ours.embedding.weight)
        hand.lstm.weight_ih_l0.copy_(cell.weight_ih)
        hand.lstm.weight_hh_l0.copy_(cell.weight_hh)
        hand.lstm.bias_ih_l0.copy_(cell.bias_ih)
        hand.lstm.bias_hh_l0.copy_(cell.bias_hh)
        hand.head.weight.copy_(ours.head.weight)
        hand.head.bias.copy_(ours.head.bias)
    ids = np.asarray(tiny_corpus.tokens("train"), dtype=np.int64)
    loop = script.train_steps(hand, ids, batch=8, bptt=64, lr=2e-3, clip=0.05)
    expected = [next(loop) for _ in range(steps)]

    assert [r["tokens"] for r in records] == [t for t, _ in expected]
    got = torch.tensor([r["loss"] for r in records], dtype=torch.float64)
    want = torch.tensor([loss for _, loss in expected], dtype=torch.float64)
    assert want[-1] < want[0] - 0.05  # it learnt something: the comparison is not of constants
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
