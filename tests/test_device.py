"""`resolve_device`: only devices this machine has, refused in one line naming those it has."""

from __future__ import annotations

import pytest
import torch

from lstmlab.device import available_devices, resolve_device
from lstmlab.errors import UsageError


def test_auto_and_cpu_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cpu:0").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == (expected or "cpu")
    assert "cpu" in available_devices()


def _absent() -> list[str]:
    names = ["meta", "toaster", "CPU", " cpu", "cuda:x", "", "cuda:99"]
    if not torch.cuda.is_available():
        names += ["cuda", "cuda:0", "cuda:7"]
    if not torch.backends.mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is None or not xpu.is_available():
        names += ["xpu", "xpu:1"]
    return names


@pytest.mark.parametrize("name", _absent())
def test_devices_this_machine_lacks_are_refused_naming_those_it_has(name):
    with pytest.raises(UsageError) as err:
        resolve_device(name)
    assert repr(name) in err.value.message and "\n" not in err.value.message
    assert "cpu" in err.value.hint and "--device auto" in err.value.hint
