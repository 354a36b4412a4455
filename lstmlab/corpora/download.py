"""Download a source file once, resumably, and only keep it when its checksum is right.

`download(url, dest, sha256=..., size=...)` streams into `dest.part`, resumes a
partial file with an HTTP Range request (a server answering 206 continues it,
one answering 200 starts over), checks size and sha256, and renames to `dest`
only when both match. A file already at `dest` with the right checksum is
reused, so `lstmlab prepare` downloads each archive once per data folder
(cached under `<data_dir>/downloads/`). Network failures become a
`DownloadError` whose hint says how to pass a local copy with `--source`.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lstmlab import __version__
from lstmlab.corpora.store import sha256_file
from lstmlab.errors import ChecksumError, DownloadError
from lstmlab.progress import NullProgress, Progress

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-\d+/(\d+|\*)")


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    size: int | None,
    progress: Progress | None = None,
    opener: Callable | None = None,
) -> Path:
    """Fetch `url` into `dest` (verified by `size` and `sha256` when given) and return `dest`."""
    dest = Path(dest)
    progress = progress or NullProgress()
    opener = opener or urllib.request.urlopen
    if dest.is_file() and _matches(dest, sha256, size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    if size is not None and part.is_file() and part.stat().st_size > size:
        part.unlink()  # longer than the whole file: not a prefix of it
    for attempt in range(2):
        try:
            _fetch(url, part, progress, opener, size)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and attempt == 0 and part.is_file():
                part.unlink()  # our partial file is not a prefix the server recognises: start over
                continue
            raise DownloadError(
                f"downloading {url} failed: HTTP {exc.code} {exc.reason}", hint=_hint(url)
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            kept = (
                f"; {part.stat().st_size:,} bytes kept in {part}, a rerun resumes"
                if part.is_file()
                else ""
            )
            raise DownloadError(
                f"downloading {url} failed: {reason}{kept}", hint=_hint(url)
            ) from None
    _verify(part, url, sha256, size)
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, progress: Progress, opener: Callable, size: int | None) -> None:
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset == size:
        return  # the partial file is already complete; only verification is left
    headers = {"User-Agent": f"lstmlab/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    with opener(request, timeout=TIMEOUT_S) as response:
        status = getattr(response, "status", None) or response.getcode()
        if status not in (200, 206):
            raise DownloadError(f"downloading {url} failed: HTTP {status}", hint=_hint(url))
        if status == 206 and _range_start(response) not in (None, offset):
            raise DownloadError(
                f"downloading {url} failed: the server resumed at the wrong offset", hint=_hint(url)
            )
        if status == 200:
            offset = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length is not None else size
        received = offset
        with (
            open(part, "ab" if offset else "wb") as out,
            progress.task(
                f"download {part.name.removesuffix('.part')}", total=expected, unit="bytes"
            ) as task,
        ):
            task.advance(offset)
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                task.advance(len(chunk))
    if length is not None and received < expected:
        raise DownloadError(
            f"downloading {url} stopped after {received:,} of {expected:,} bytes; the partial file {part} is kept, a rerun resumes",
            hint=_hint(url),
        )


def _range_start(response) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
    return int(match.group(1)) if match else None


def _matches(path: Path, sha256: str | None, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return sha256 is None or sha256_file(path) == sha256


def _verify(part: Path, url: str, sha256: str | None, size: int | None) -> None:
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise ChecksumError(
            f"{url} has {actual_size:,} bytes, expected {size:,}; the download was deleted",
            hint=_hint(url),
        )
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256:
            part.unlink()
            raise ChecksumError(
                f"{url} has sha256 {actual}, expected {sha256}; the download was deleted",
                hint=_hint(url),
            )


def _hint(url: str) -> str:
    return f"check the network, or fetch {url} yourself and pass the file with --source PATH"
