"""`lstmlab score`, `export` and `push` through Typer (registered here: app.py is not ours yet)."""

from __future__ import annotations

import socket
from pathlib import Path

import huggingface_hub
import pytest
import typer
from typer.testing import CliRunner

from lstmlab.cli.export import export_cmd
from lstmlab.cli.push import push_cmd
from lstmlab.cli.score import score_cmd

from tiny_run import place_in_hub_cache, trained_tied_run

TEXT = "the quick brown fox jumps over the lazy dog.\n"


@pytest.fixture
def tied_run(tmp_path_factory):
    return trained_tied_run(tmp_path_factory)


@pytest.fixture
def cli():
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("score")(score_cmd)
    app.command("export")(export_cmd)
    app.command("push")(push_cmd)
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


def _one_line_error(result, code):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_score_text_writes_tsv_and_html(cli, tied_run, tmp_path):
    tsv, page = tmp_path / "chars.tsv", tmp_path / "page.html"
    result = cli(
        "score", tied_run, "--text", TEXT, "--per-char", tsv, "--html", page, "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    assert "bpc " in result.output and f"chars {len(TEXT)}" in result.output
    assert "followed a newline" in result.output
    rows = tsv.read_text().splitlines()
    assert rows[-1].startswith(f"{len(TEXT) - 1}\t\\n\t")
    assert "<pre class='text'>" in page.read_text()


def test_score_file_and_stdin_agree(cli, tied_run, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT, encoding="utf-8")
    from_file = cli("score", tied_run, doc, "--device", "cpu")
    from_stdin = cli("score", tied_run, "-", "--device", "cpu", input=TEXT)
    assert from_file.exit_code == from_stdin.exit_code == 0, from_file.output
    assert from_file.output.splitlines()[0] == from_stdin.output.splitlines()[0]


def test_score_bad_input_is_one_line(cli, tied_run, tmp_path):
    assert "exactly one" in _one_line_error(cli("score", tied_run), 2)
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT)
    assert "exactly one" in _one_line_error(cli("score", tied_run, doc, "--text", "x"), 2)
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in _one_line_error(cli("score", tied_run, tmp_path / "bin.txt"), 2)
    line = _one_line_error(cli("score", tied_run, "--text", "The Fox"), 1)
    assert "outside the model's vocabulary" in line
    assert "does not exist" in _one_line_error(cli("score", tmp_path / "nope", "--text", "a"), 1)


def test_score_dynamic(cli, tied_run, tmp_path):
    result = cli("score", tied_run, "--text", TEXT * 3, "--dynamic", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "(dynamic)" in result.output and "dynamic evaluation" in result.output
    missing = cli("score", tied_run, "--text", TEXT, "--dynamic", "--data-dir", tmp_path / "none")
    assert "needs the model's training corpus" in _one_line_error(missing, 2)


def test_export_then_score_the_export_and_a_hub_id(cli, tied_run, tmp_path, monkeypatch):
    out = tmp_path / "export"
    result = cli("export", tied_run, out)
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file()
    direct = cli("score", tied_run, "--text", TEXT, "--device", "cpu").output.splitlines()[0]
    exported = cli("score", out, "--text", TEXT, "--device", "cpu")
    assert exported.exit_code == 0 and exported.output.splitlines()[0] == direct
    place_in_hub_cache(out, tmp_path / "cache", "user/tiny")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("network"))
    hub = cli("score", "hf://user/tiny", "--text", TEXT, "--device", "cpu")
    assert hub.exit_code == 0, hub.output
    assert hub.output.splitlines()[0] == direct
    assert "is not in" in _one_line_error(cli("score", "hf://user/other", "--text", "a"), 1)


def test_export_guards_its_target(cli, tied_run, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    line = _one_line_error(cli("export", tied_run, tmp_path / "mine", "--force"), 2)
    assert "not an lstmlab export" in line
    assert cli("export", tied_run, tmp_path / "out").exit_code == 0
    again = cli("export", tied_run, tmp_path / "out")
    assert "already holds an lstmlab export" in _one_line_error(again, 2)
    assert "hint: pass --force" in again.output
    assert cli("export", tied_run, tmp_path / "out", "--force").exit_code == 0


def test_push_through_a_fake_hub(cli, tied_run, monkeypatch):
    seen = []

    class FakeApi:
        def __init__(self, token=None):
            seen.append(("token", token))

        def create_repo(self, repo_id, **kwargs):
            seen.append(("create", repo_id, kwargs["private"]))

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            seen.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = cli("push", tied_run, "user/tiny", "--private", "--token", "t0k")
    assert result.exit_code == 0, result.output
    assert "https://huggingface.co/user/tiny" in result.output
    assert seen[0] == ("token", "t0k") and seen[1] == ("create", "user/tiny", True)
    assert seen[2][1] == "user/tiny" and "model.safetensors" in seen[2][2]
    assert "not a Hub model id" in _one_line_error(cli("push", tied_run, "no-slash"), 2)
