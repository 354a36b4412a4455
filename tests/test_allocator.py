"""lstmlab.allocator: glibc's thresholds raised through mallopt, and nothing done where that is wrong."""

from __future__ import annotations

import sys

import pytest

from lstmlab import allocator


class FakeLibc:
    def __init__(self, accept: bool = True) -> None:
        self.calls: list[tuple[int, int]] = []

        def mallopt(param: int, value: int) -> int:  # a function, so ctypes attributes stick
            self.calls.append((param, value))
            return 1 if accept else 0

        self.mallopt = mallopt


def _loader(libc):
    def load(name):
        assert name == "libc.so.6"
        return libc

    return load


@pytest.fixture
def on_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv(allocator.ENV, raising=False)


def test_raises_both_thresholds(on_linux):
    libc = FakeLibc()
    assert allocator.keep_freed_memory(_loader(libc)) is True
    assert libc.calls == [
        (allocator.M_MMAP_THRESHOLD, 2**30),
        (allocator.M_TRIM_THRESHOLD, 2**31 - 1),
    ]


def test_reports_a_refused_setting(on_linux):
    assert allocator.keep_freed_memory(_loader(FakeLibc(accept=False))) is False


def test_does_nothing_when_turned_off_or_elsewhere(on_linux, monkeypatch):
    libc = FakeLibc()
    monkeypatch.setenv(allocator.ENV, "0")
    assert allocator.keep_freed_memory(_loader(libc)) is False
    monkeypatch.delenv(allocator.ENV)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.keep_freed_memory(_loader(libc)) is False
    assert libc.calls == []


def test_survives_a_libc_without_mallopt(on_linux):
    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    assert allocator.keep_freed_memory(missing) is False
    assert allocator.keep_freed_memory(_loader(object())) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_real_glibc_accepts_the_settings(on_linux):
    """On this project's machines (glibc Linux) the real call succeeds."""
    assert allocator.keep_freed_memory() is True
