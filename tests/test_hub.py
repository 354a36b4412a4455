"""hf:// ids: resolution from a local Hub cache offline, and the upload at the API boundary.

No test touches the network: every test runs with sockets refused, and the
upload is checked against a fake `huggingface_hub.HfApi`.
"""

from __future__ import annotations

import socket
from pathlib import Path

import huggingface_hub
import pytest

from lstmlab.errors import CheckpointError, LstmlabError, UsageError
from lstmlab.hub import parse_hub_id, push_run
from lstmlab.portable import export_run, load, resolve_model_source

from tiny_run import place_in_hub_cache, trained_tied_run

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def tied_run(tmp_path_factory):
    return trained_tied_run(tmp_path_factory)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tied_run):
    """An offline Hub cache holding user/tiny (main = COMMIT) built from a real export."""
    cache = tmp_path / "hf-cache"
    export = export_run(tied_run, tmp_path / "export", load_as="hf://user/tiny")
    place_in_hub_cache(export, cache, "user/tiny", COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.mark.parametrize(
    "text, expected",
    [
        ("hf://user/repo", ("user/repo", None)),
        ("hf://user/repo@v1.0", ("user/repo", "v1.0")),
        ("hf:/user/my-model.x@" + COMMIT, ("user/my-model.x", COMMIT)),  # pathlib's spelling
    ],
)
def test_parse_hub_id(text, expected):
    assert parse_hub_id(text) == expected


@pytest.mark.parametrize(
    "text", ["hf://repo", "hf://a/b/c", "hf://user/repo@", "hf://../x", "hf://"]
)
def test_bad_hub_ids_are_usage_errors(text):
    with pytest.raises(UsageError, match="not a Hub model id") as info:
        parse_hub_id(text)
    assert info.value.exit_code == 2


def test_offline_load_from_the_hub_cache(hub_cache, tied_run):
    snapshot = hub_cache / "models--user--tiny" / "snapshots" / COMMIT
    assert resolve_model_source("hf://user/tiny") == snapshot
    assert resolve_model_source(Path("hf://user/tiny")) == snapshot  # Typer hands a Path
    lm = load("hf://user/tiny")
    again = load(f"hf://user/tiny@{COMMIT}")
    local = load(tied_run)
    text = "the lazy dog jumps."
    assert lm.score(text).total_bits == pytest.approx(local.score(text).total_bits, abs=1e-9)
    assert again.generate(length=20, seed=1) == local.generate(length=20, seed=1)
    assert lm.source == snapshot
    assert 'lstmlab.load("hf://user/tiny")' in (snapshot / "README.md").read_text()


def test_hf_home_names_the_cache_when_hf_hub_cache_is_unset(tmp_path, monkeypatch, tied_run):
    home = tmp_path / "hf-home"
    export = export_run(tied_run, tmp_path / "export")
    place_in_hub_cache(export, home / "hub", "user/tiny", COMMIT)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load("hf://user/tiny").tokenizer.vocab_size == load(tied_run).tokenizer.vocab_size


def test_offline_miss_is_a_one_line_error(hub_cache):
    with pytest.raises(
        CheckpointError, match="hf://user/other is not in .* HF_HUB_OFFLINE"
    ) as info:
        load("hf://user/other")
    assert "download it once while online" in info.value.hint
    with pytest.raises(CheckpointError):
        load("hf://user/tiny@" + "f" * 40)


class FakeHfApi:
    """Records what lstmlab asks of the Hub and what the uploaded folder holds at upload time."""

    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.calls.append(("upload_folder", repo_id, kwargs, files, folder))


@pytest.fixture
def fake_api(monkeypatch):
    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return FakeHfApi


def test_push_creates_the_repo_and_uploads_the_export(fake_api, tied_run, tmp_path, monkeypatch):
    url = push_run(tied_run, "user/tiny", private=True, token="hf_secret")
    assert url == "https://huggingface.co/user/tiny"
    (init, create, upload) = fake_api.calls
    assert init == ("init", "hf_secret")
    assert create[1] == "user/tiny"
    assert create[2]["exist_ok"] is True and create[2]["private"] is True
    assert create[2]["repo_type"] == "model"
    _, repo_id, kwargs, files, folder = upload
    assert repo_id == "user/tiny" and kwargs["repo_type"] == "model"
    assert sorted(files) == [
        "README.md",
        "config.yaml",
        "lstmlab-export.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert b'lstmlab.load("hf://user/tiny")' in files["README.md"]
    assert not folder.exists()  # the temporary export is cleaned up
    # What was uploaded is a loadable export: put it in a cache and load it offline.
    snapshot = tmp_path / "cache" / "models--user--tiny" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load("hf://user/tiny").generate(length=10, seed=0) == load(tied_run).generate(
        length=10, seed=0
    )


def test_push_refuses_offline_and_revisions(fake_api, tied_run, monkeypatch):
    with pytest.raises(UsageError, match="drop @v1"):
        push_run(tied_run, "hf://user/tiny@v1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match="HF_HUB_OFFLINE"):
        push_run(tied_run, "user/tiny")
    assert fake_api.calls == []


def test_upload_failure_is_a_one_line_error(fake_api, tied_run, monkeypatch):
    from huggingface_hub.errors import HfHubHTTPError

    def fail(self, **kwargs):
        # built without __init__: its response argument's type differs between releases
        error = HfHubHTTPError.__new__(HfHubHTTPError)
        Exception.__init__(error, "401 Client Error: Unauthorized for url\nmore detail")
        raise error

    monkeypatch.setattr(FakeHfApi, "upload_folder", fail)
    with pytest.raises(LstmlabError, match=r"upload to user/tiny failed \(401") as info:
        push_run(tied_run, "user/tiny")
    assert "\n" not in info.value.message and "HF_TOKEN" in info.value.hint


def test_eval_reads_exports_and_hub_ids_and_writes_nothing_there(hub_cache, tied_run, tmp_path):
    from typer.testing import CliRunner

    from lstmlab.cli.app import app
    from lstmlab.evaluate import evaluate_run

    data_dir = tied_run.parent / "data"  # where the tied run's corpus was prepared
    direct = evaluate_run(tied_run, data_dir=data_dir).splits["test"].result.bpc
    export = tmp_path / "export"  # built by the hub_cache fixture
    from_export = evaluate_run(export, data_dir=data_dir)
    assert from_export.which == "export" and from_export.corpus_splits
    assert from_export.splits["test"].result.bpc == pytest.approx(direct, rel=1e-6)
    result = CliRunner().invoke(
        app, ["eval", "hf://user/tiny", "--data-dir", str(data_dir), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "eval.json not written" in result.output
    assert not list(hub_cache.rglob("eval.json")) and not (export / "eval.json").exists()
