"""Streams and evaluation windows cover every (input, target) pair exactly once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmlab.batching import Streams, eval_windows
from lstmlab.errors import CorpusError


@pytest.mark.parametrize(
    "n,batch,bptt", [(101, 4, 7), (50, 7, 100), (10, 3, 2), (2, 5, 3), (33, 1, 8)]
)
def test_eval_windows_predict_every_token_after_the_first_once(n, batch, bptt):
    tokens = np.arange(n) % 251
    pairs = []
    for x, y, _ in eval_windows(tokens, batch, bptt):
        assert x.shape == y.shape
        pairs += list(zip(x.flatten().tolist(), y.flatten().tolist()))
    assert len(pairs) == n - 1
    assert sorted(b for _, b in pairs) == sorted(tokens[1:].tolist())
    assert all((b - a) % 251 == 1 for a, b in pairs)  # every target follows its input


def test_streams_are_contiguous_rows():
    tokens = np.arange(41)
    s = Streams(tokens, 4)
    assert s.length == 10
    x, y = s.window(0, 10)
    assert x[1].tolist() == list(range(10, 20))
    assert torch.equal(y, x + 1)
    x2, _ = s.window(8, 5)  # clipped at the stream end
    assert x2.shape == (4, 2)


def test_too_short_split_is_a_clear_error():
    with pytest.raises(CorpusError, match="too short"):
        Streams(np.arange(3), 4)
    with pytest.raises(CorpusError, match="nothing to predict"):
        list(eval_windows(np.arange(1), 2, 2))
