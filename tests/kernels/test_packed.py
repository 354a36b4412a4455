"""oneDNN's packed products (kernels/packed.py) against torch.mm, and the window Functions that use
them against their float32 step loops."""

import pytest
import torch

from lstmlab import kernels
from lstmlab.cells import build_layer
from lstmlab.cells.configs import MogrifierConfig, MultiplicativeConfig
from lstmlab.cells.lstm import LSTMState
from lstmlab.cells.multiplicative import MultiplicativeState
from lstmlab.kernels import packed

from kernel_support import window_outputs_and_gradients

ONEDNN = torch.backends.mkldnn.is_available()


def test_packed_path_is_taken_exactly_where_it_applies(monkeypatch):
    """float32 CPU matrices from 512 x 512 up are packed when torch has oneDNN and the window
    has enough rows x steps to repay it; small matrices, a single stream's short window,
    float64 and LSTMLAB_ONEDNN=0 use torch.mm."""
    big = torch.randn(512, 512)
    assert (packed.StepProduct(big, 32, 128).packed is not None) == ONEDNN
    assert (packed.StepProduct(big, 8, 8).packed is not None) == ONEDNN
    assert (packed.StepProduct(big, 1, 64).packed is not None) == ONEDNN
    assert packed.StepProduct(big, 1, 16).packed is None  # dynamic evaluation's segments
    assert packed.StepProduct(torch.randn(512, 32), 32, 128).packed is None
    assert packed.StepProduct(big.double(), 32, 128).packed is None
    with monkeypatch.context() as patch:
        patch.setattr(torch.backends.mkldnn, "enabled", False)
        assert packed.StepProduct(big, 32, 128).packed is None
    assert torch.backends.mkldnn.enabled  # restored for the other tests
    monkeypatch.setenv("LSTMLAB_ONEDNN", "0")
    assert packed.StepProduct(big, 32, 128).packed is None
    assert not packed.packing_applies(big)


@pytest.mark.parametrize("transposed", [False, True])
def test_step_product_matches_float64_products(transposed):
    """a @ M, a @ M + bias, a @ M + other and the out= form, for the packed row count and another,
    with M a contiguous matrix or a transposed view (how the Functions pass W.t())."""
    torch.manual_seed(0)
    matrix = torch.randn(384, 768) / 20
    if transposed:
        matrix = torch.randn(768, 384).t() / 20
    product = packed.StepProduct(matrix, 8, 8)
    assert (product.packed is not None) == ONEDNN
    bias, m64 = torch.randn(768), matrix.double()
    for rows in (8, 3):
        a = torch.randn(rows, 384)
        other = torch.randn(rows, 768)
        expected = a.double() @ m64
        out = torch.empty(rows, 768)
        results = {
            "plain": (product(a), expected),
            "bias": (product(a, add=bias), expected + bias.double()),
            "other": (product(a, add=other), expected + other.double()),
            "out": (product(a, add=bias, out=out), expected + bias.double()),
        }
        for name, (got, want) in results.items():
            assert got.dtype == torch.float32, name
            torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5, msg=name)
        assert results["out"][0].data_ptr() == out.data_ptr()


def test_linear_and_matmul_match_float64():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(4, 5, 64), torch.randn(96, 64) / 8, torch.randn(96)
    expected = x.double() @ weight.double().t() + bias.double()
    close = {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(packed.linear(x, weight, bias).double(), expected, **close)
    a = torch.randn(40, 64)
    # b a transposed view (linear gets a contiguous weight) or contiguous (linear gets its
    # transposed view, as the multiplicative backward's matmul(d_both, W_in) does)
    for b in (torch.randn(96, 64).t(), torch.randn(64, 96)):
        torch.testing.assert_close(packed.matmul(a, b).double(), a.double() @ b.double(), **close)
    # float64 takes F.linear, bit for bit
    x64 = x.double()
    assert torch.equal(
        packed.linear(x64, weight.double()), torch.nn.functional.linear(x64, weight.double())
    )


def _multiplicative():
    cell = build_layer(
        MultiplicativeConfig(hidden_dim=24, state_dropout=0.2), 16, weight_dropout=0.1
    )
    s0 = MultiplicativeState(*(torch.randn(3, 24, requires_grad=True) for _ in range(2)))
    return cell, s0


def _mogrifier(rank):
    config = MogrifierConfig(hidden_dim=24, rounds=5, rank=rank, state_dropout=0.2)
    cell = build_layer(config, 16, weight_dropout=0.1)
    s0 = LSTMState(*(torch.randn(3, 24, requires_grad=True) for _ in range(2)))
    return cell, s0


@pytest.mark.parametrize(
    "make",
    [_multiplicative, lambda: _mogrifier(4), lambda: _mogrifier(None)],
    ids=["multiplicative", "mogrifier-rank4", "mogrifier-full"],
)
def test_window_functions_on_packed_products_match_the_float32_step_loop(make, monkeypatch):
    """With every product packed (size floor lifted), a training window's outputs and all its
    gradients equal autograd through the step loop up to float32 rounding."""
    monkeypatch.setattr(packed, "MIN_PACKED_ENTRIES", 0)
    monkeypatch.setattr(packed, "MIN_PACKED_ROW_STEPS", 0)
    made = []
    original = packed.StepProduct.__init__

    def spy(self, matrix, rows, steps):
        original(self, matrix, rows, steps)
        made.append(self.packed is not None)

    monkeypatch.setattr(packed.StepProduct, "__init__", spy)
    torch.manual_seed(0)
    cell, s0 = make()
    cell.train()
    x = torch.randn(3, 9, 16, requires_grad=True)
    fast, _ = window_outputs_and_gradients(cell, x, s0, kernel=True)
    assert made and all(p == ONEDNN for p in made)  # forward and backward products
    ref, _ = window_outputs_and_gradients(cell, x, s0, kernel=False)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize(
    "make", [_multiplicative, lambda: _mogrifier(4)], ids=["multiplicative", "mogrifier"]
)
def test_torch_compile_runs_the_window_functions_eagerly(make, monkeypatch):
    """A compiled cell calls its window Function eagerly (inductor cannot lower oneDNN's packed
    matrix, and dynamo mis-traced the per-step views); outputs and gradients are eager's."""
    monkeypatch.setattr(packed, "MIN_PACKED_ENTRIES", 0)  # eager packs every product
    monkeypatch.setattr(packed, "MIN_PACKED_ROW_STEPS", 0)
    torch.manual_seed(0)
    cell, s0 = make()
    cell.eval()  # no dropout masks, so both runs see the same function
    x = torch.randn(3, 9, 16, requires_grad=True)
    eager, _ = window_outputs_and_gradients(cell, x, s0, kernel=True)
    compiled_cell = torch.compile(cell, backend="inductor")
    torch._dynamo.reset()
    compiled, _ = window_outputs_and_gradients(compiled_cell, x, s0, kernel=True)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize(
    "make", [_multiplicative, lambda: _mogrifier(4)], ids=["multiplicative", "mogrifier"]
)
def test_windows_without_gradients_keep_one_steps_scratch(make):
    """Inference through a window Function keeps no per-window buffers: it allocates about what
    the step loop does, far less than the same window with gradients; outputs are the loop's."""
    from lstmlab.bench import cpu_peak_allocated_bytes

    torch.manual_seed(0)
    cell, _ = make()
    cell.eval()
    x = torch.randn(8, 64, 16)
    s0 = cell.initial_state(8)

    def no_grad_window():
        with torch.no_grad():
            return cell(x, s0)[0]

    function = cpu_peak_allocated_bytes(no_grad_window)
    with_grad = cpu_peak_allocated_bytes(lambda: cell(x, s0)[0])
    expected = no_grad_window()
    with kernels.reference_only():
        loop = cpu_peak_allocated_bytes(no_grad_window)
    if ONEDNN:  # the Function ran without gradients (float32 CPU)
        assert function < 1.5 * loop and 2 * function < with_grad
    torch.testing.assert_close(expected, no_grad_window())


@pytest.mark.parametrize("with_bias", [False, True])
def test_trained_linear_matches_f_linear_with_gradients(with_bias):
    """The mLSTM block's projections: outputs and the gradients of input, weight and bias equal
    F.linear's in float64 up to float32 rounding; float64 itself takes F.linear."""
    torch.manual_seed(0)
    x = torch.randn(3, 7, 48, requires_grad=True)
    weight = (torch.randn(80, 48) / 7).requires_grad_()
    bias = torch.randn(80, requires_grad=True) if with_bias else None
    leaves = [t for t in (x, weight, bias) if t is not None]
    y = packed.trained_linear(x, weight, bias)
    assert ("OneDNNLinear" in y.grad_fn.name()) == ONEDNN
    ramp = torch.linspace(-1, 1, y.numel()).view_as(y)
    grads = torch.autograd.grad((y * ramp).sum(), leaves)
    wide = [t.detach().double().requires_grad_() for t in leaves]
    y64 = torch.nn.functional.linear(*wide, *([] if with_bias else [None]))
    grads64 = torch.autograd.grad((y64 * ramp.double()).sum(), wide)
    close = {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(y.double(), y64, **close)
    for got, want in zip(grads, grads64, strict=True):
        torch.testing.assert_close(got.double(), want, **close)
    y_fallback = packed.trained_linear(*wide, *([] if with_bias else [None]))
    assert "OneDNN" not in y_fallback.grad_fn.name()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps F.linear's casting
        assert packed.trained_linear(x, weight, bias).dtype == torch.bfloat16
