"""download(): complete, resumed, restarted, reused, corrupt and failed transfers, all against a fake server."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest

from lstmlab.corpora.download import download
from lstmlab.errors import ChecksumError, DownloadError

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes: several chunks of the fake's reads
SHA = hashlib.sha256(PAYLOAD).hexdigest()
URL = "http://example.invalid/file.bin"


class RecordingProgress:
    def __init__(self):
        self.tasks = []

    def task(self, description, total=None, *, unit=""):
        record = {"description": description, "total": total, "unit": unit, "done": 0}
        self.tasks.append(record)

        class _Task:
            def advance(self, amount=1):
                record["done"] += amount

            def update(self, **fields):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return None

        return _Task()


def test_complete_download_is_verified_and_renamed(tmp_path, fake_server):
    server, progress = fake_server(PAYLOAD), RecordingProgress()
    dest = download(
        URL,
        tmp_path / "dl" / "file.bin",
        sha256=SHA,
        size=len(PAYLOAD),
        progress=progress,
        opener=server,
    )
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "dl" / "file.bin.part").exists()
    assert server.requests[0].get_header("Range") is None
    assert progress.tasks == [
        {
            "description": "download file.bin",
            "total": len(PAYLOAD),
            "unit": "bytes",
            "done": len(PAYLOAD),
        }
    ]


def test_partial_file_is_resumed_with_a_range_request(tmp_path, fake_server):
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:3000])
    server = fake_server(PAYLOAD)
    download(URL, dest, sha256=SHA, size=len(PAYLOAD), opener=server)
    assert server.requests[0].get_header("Range") == "bytes=3000-"
    assert dest.read_bytes() == PAYLOAD


def test_server_without_ranges_restarts_from_zero(tmp_path, fake_server):
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"junk" * 100)
    download(URL, dest, sha256=SHA, size=None, opener=fake_server(PAYLOAD, ranges=False))
    assert dest.read_bytes() == PAYLOAD


def test_verified_file_is_reused_without_network(tmp_path, fake_server):
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    server = fake_server(PAYLOAD)
    assert download(URL, dest, sha256=SHA, size=len(PAYLOAD), opener=server) == dest
    assert server.requests == []


def test_stale_file_is_downloaded_again(tmp_path, fake_server):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old contents")
    download(URL, dest, sha256=SHA, size=None, opener=fake_server(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(tmp_path, fake_server):
    dest = tmp_path / "file.bin"
    with pytest.raises(ChecksumError, match="expected " + "0" * 64) as info:
        download(URL, dest, sha256="0" * 64, size=None, opener=fake_server(PAYLOAD))
    assert SHA in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_leaves_nothing(tmp_path, fake_server):
    with pytest.raises(ChecksumError, match="10,240 bytes, expected 10,241"):
        download(
            URL,
            tmp_path / "file.bin",
            sha256=None,
            size=len(PAYLOAD) + 1,
            opener=fake_server(PAYLOAD),
        )
    assert list(tmp_path.iterdir()) == []


def test_network_error_is_a_download_error_with_a_source_hint(tmp_path):
    def offline(request, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    with pytest.raises(DownloadError, match="Name or service not known") as info:
        download(URL, tmp_path / "file.bin", sha256=SHA, size=None, opener=offline)
    assert "--source" in info.value.hint
    assert not (tmp_path / "file.bin").exists()


def test_http_error_is_a_download_error(tmp_path):
    def not_found(request, timeout=None):
        raise urllib.error.HTTPError(URL, 404, "Not Found", {}, None)

    with pytest.raises(DownloadError, match="HTTP 404"):
        download(URL, tmp_path / "file.bin", sha256=SHA, size=None, opener=not_found)


def test_interrupted_transfer_keeps_the_part_and_a_rerun_finishes(tmp_path, fake_server):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="read timed out"):
        download(
            URL, dest, sha256=SHA, size=len(PAYLOAD), opener=fake_server(PAYLOAD, fail_after=4000)
        )
    assert (tmp_path / "file.bin.part").stat().st_size == 4000
    assert not dest.exists()
    server = fake_server(PAYLOAD)
    download(URL, dest, sha256=SHA, size=len(PAYLOAD), opener=server)
    assert server.requests[0].get_header("Range") == "bytes=4000-"
    assert dest.read_bytes() == PAYLOAD


def test_short_body_is_reported_as_interrupted(tmp_path, fake_server):
    with pytest.raises(DownloadError, match="stopped after 5,000 of 10,240 bytes"):
        download(
            URL,
            tmp_path / "file.bin",
            sha256=SHA,
            size=None,
            opener=fake_server(PAYLOAD, truncate=5000),
        )
    assert (tmp_path / "file.bin.part").stat().st_size == 5000
