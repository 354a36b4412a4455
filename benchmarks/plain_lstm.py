"""The obvious hand-written nn.LSTM character model: the baseline lstmlab's recipes must beat.

    python benchmarks/plain_lstm.py data/ptb --report 500k,1M,2M
    python benchmarks/plain_lstm.py some.txt --report 2M      # raw text: last 5% is validation

What a user writes in ~100 lines without lstmlab: nn.Embedding(V, 128) with its
default N(0, 1) init, one nn.LSTM(128, 512), a Linear head, batch 32, BPTT 128,
Adam lr 2e-3, gradient-norm clip 1, the training split cut into 32 contiguous
streams whose state is carried (detached) from window to window. It prints the
validation bpc (whole split, state carried) whenever the tokens trained pass a
--report count. It imports nothing from lstmlab: recipes/small/plain-lstm.yaml
is the same configuration in lstmlab, and tests/test_plain_baseline.py checks
that the two train alike.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_corpus(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(train ids, valid ids, vocabulary size) from an lstmlab corpus folder or a text file."""
    if path.is_dir():  # `lstmlab prepare` output: meta.json + flat <split>.bin arrays
        meta = json.loads((path / "meta.json").read_text())
        dtype = np.dtype(meta["dtype"])
        train, valid = (np.fromfile(path / f"{s}.bin", dtype=dtype) for s in ("train", "valid"))
        return train.astype(np.int64), valid.astype(np.int64), len(meta["tokenizer"]["symbols"])
    text = path.read_text(encoding="utf-8")
    index = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    cut = int(len(ids) * 0.95)
    return ids[:cut], ids[cut:], len(index)


def as_streams(ids: np.ndarray, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (B, L): B contiguous streams of the (input, next) pairs."""
    length = (len(ids) - 1) // batch
    x = torch.from_numpy(ids[: batch * length]).view(batch, length)  # (B, L)
    y = torch.from_numpy(ids[1 : batch * length + 1]).view(batch, length)  # (B, L)
    return x, y


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, embed: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embedding(x), state)  # (B, T, H)
        return self.head(out), state  # (B, T, V)


@torch.no_grad()
def valid_bpc(model: CharLSTM, ids: np.ndarray, batch: int, bptt: int) -> float:
    model.eval()
    x, y = as_streams(ids, batch)
    nats, state = 0.0, None
    for i in range(0, x.shape[1], bptt):
        logits, state = model(x[:, i : i + bptt], state)
        nats += F.cross_entropy(logits.flatten(0, 1), y[:, i : i + bptt].flatten(), reduction="sum")
    model.train()
    return float(nats) / y.numel() / math.log(2)


def train_steps(model: CharLSTM, ids: np.ndarray, batch: int, bptt: int, lr: float, clip: float):
    """Train forever, epoch after epoch; yield (tokens trained, this step's loss) after each step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = as_streams(ids, batch)
    tokens = 0
    while True:
        state = None  # a new epoch restarts the streams from zero state
        for i in range(0, x.shape[1], bptt):
            if state is not None:
                state = tuple(s.detach() for s in state)
            logits, state = model(x[:, i : i + bptt], state)
            loss = F.cross_entropy(logits.flatten(0, 1), y[:, i : i + bptt].flatten())
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            tokens += logits.shape[0] * logits.shape[1]
            yield tokens, loss.item()


def count(text: str) -> int:
    """'500k', '2M', '10000' -> tokens."""
    scale = {"k": 10**3, "m": 10**6}.get(text[-1].lower(), 1)
    return int(float(text.rstrip("kKmM")) * scale)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="an lstmlab corpus folder or a UTF-8 text file")
    ap.add_argument("--report", default="500k,1M,2M", help="token counts to print valid bpc at")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    train, valid, vocab = read_corpus(args.corpus)
    model = CharLSTM(vocab)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {vocab}")
    reports = sorted(count(r) for r in args.report.split(","))
    start = time.perf_counter()
    for tokens, _ in train_steps(model, train, args.batch, args.bptt, args.lr, args.clip):
        if tokens >= reports[0]:
            bpc = valid_bpc(model, valid, args.batch, args.bptt)
            seconds = time.perf_counter() - start
            print(f"tokens {tokens:>10,}  valid bpc {bpc:.4f}  {seconds:.0f} s", flush=True)
            reports.pop(0)
            if not reports:
                break


if __name__ == "__main__":
    main()
