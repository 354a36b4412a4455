"""Corpora test helpers: a fake HTTP server (an urlopen-like opener) and tiny PTB-format text."""

from __future__ import annotations

import pytest


class FakeResponse:
    """What urlopen returns, as far as download() uses it: status, headers, read(n), a context manager."""

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        headers: dict | None = None,
        fail_after: int | None = None,
    ):
        self.body, self.status, self.pos, self.fail_after = body, status, 0, fail_after
        self.headers = {"Content-Length": str(len(body)), **(headers or {})}

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise TimeoutError("read timed out")
        n = min(n if n >= 0 else len(self.body), 1000)
        chunk = self.body[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class FakeServer:
    """An opener serving `payload`; honours Range requests unless told not to, and records requests."""

    def __init__(
        self,
        payload: bytes,
        *,
        ranges: bool = True,
        fail_after: int | None = None,
        truncate: int | None = None,
    ):
        self.payload, self.ranges, self.fail_after, self.truncate = (
            payload,
            ranges,
            fail_after,
            truncate,
        )
        self.requests = []

    def __call__(self, request, timeout=None):
        self.requests.append(request)
        wanted = request.get_header("Range")
        if wanted and self.ranges:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            headers = {
                "Content-Range": f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}"
            }
            return FakeResponse(self.payload[start:], 206, headers, self.fail_after)
        response = FakeResponse(self.payload, 200, None, self.fail_after)
        if self.truncate is not None:
            response.body = self.payload[: self.truncate]  # Content-Length still promises it all
        return response


@pytest.fixture
def fake_server():
    """The FakeServer class: `fake_server(payload, ranges=..., fail_after=..., truncate=...)`."""
    return FakeServer


def _ptb_char_text(sentences: list[str]) -> str:
    out = []
    for sentence in sentences:
        symbols = list("_".join(sentence.split())) + ["\n"]
        out.append("".join(s + " " for s in symbols))
    return "".join(out)


@pytest.fixture
def ptb_char_text():
    """Sentences -> Mikolov's ptb.char layout: every symbol and each end of line followed by one space."""
    return _ptb_char_text
