"""Equal parameters by construction: the widest model within a budget, for every cell."""

from __future__ import annotations

import pytest

from lstmlab.cells import CELLS
from lstmlab.config import ModelConfig
from lstmlab.errors import ConfigError
from lstmlab.sizing import count, fit_hidden_dim, parse_count, with_hidden_dim


@pytest.mark.parametrize(
    "text,n",
    [
        ("1M", 10**6),
        ("250k", 250_000),
        ("1.5m", 1_500_000),
        (24_000_000, 24_000_000),
        ("3e6", 3_000_000),
    ],
)
def test_parse_count(text, n):
    assert parse_count(text) == n


@pytest.mark.parametrize("bad", ["", "1.5", "M", "-1k", True, 0, "1x"])
def test_parse_count_refuses(bad):
    with pytest.raises(ValueError):
        parse_count(bad)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_widest_width_within_the_budget(kind):
    model = ModelConfig.model_validate(
        {"embed_dim": 32, "num_layers": 2, "cell": {"kind": kind, "hidden_dim": 8}}
    )
    sized, n = fit_hidden_dim(model, vocab_size=50, budget=200_000)
    assert n == count(sized, 50) <= 200_000
    for wider in range(sized.cell.hidden_dim + 1, 4 * sized.cell.hidden_dim):
        try:
            above = count(with_hidden_dim(model, wider), 50)
        except (ValueError, ConfigError):
            continue  # a width the cell refuses
        assert above > 200_000  # the next width the cell takes is over the budget
        break
    assert n > 150_000  # close to the budget, not merely under it
