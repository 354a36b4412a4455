"""Property: random prepare / claim / --force / --resume / abandon sequences never touch a user's file.

A sandbox holds user files where a careless command would hit them: in the
working directory, in the data root, in folders named like corpora and runs,
and files the "user" drops into corpus and run folders between commands. Any
sequence of library calls (refused ones included) must leave every one of
them in place with its bytes; only lstmlab's own corpus and run files change.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmlab import runs
from lstmlab.corpora import PrepareRequest, prepare_corpus
from lstmlab.errors import LstmlabError

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 20
USER_FILES = {
    "notes.txt": "cwd notes",
    "in/book.txt": TEXT,
    "data/book/book.txt": TEXT.upper(),  # the example: input inside a same-named folder
    "data/readme.md": "my data root",
    "runs/mine/thesis.tex": "precious",
    "runs/keep/config.yaml": "not a run of ours, but looks like one",
    "runs/keep/results.csv": "1,2,3",
}
CORPUS_NAMES = ["book", "c1", "c2", "readme.md"]
INPUTS = ["in/book.txt", "data/book/book.txt", "data/c1/train.bin", "notes.txt"]
RUN_DIRS = [
    ".",
    "..",
    "runs",
    "runs/r1",
    "runs/r2",
    "runs/mine",
    "runs/keep",
    "data",
    "data/c1",
    "notes.txt",
    "in",
]
DROP_INTO = ["data/c1", "data/c2", "runs/r1", "runs/r1/checkpoints", "runs/r2", "in"]

prepare_op = st.tuples(
    st.just("prepare"), st.sampled_from(CORPUS_NAMES), st.sampled_from(INPUTS), st.booleans()
)
claim_op = st.tuples(
    st.just("claim"),
    st.sampled_from(RUN_DIRS),
    st.booleans(),  # --force
    st.booleans(),  # --resume
    st.sampled_from(["train", "fail-early", "fail-late", "abandon", "ctrl-c"]),
)
drop_op = st.tuples(st.just("drop"), st.sampled_from(DROP_INTO))
operations = st.lists(st.one_of(prepare_op, claim_op, drop_op), min_size=1, max_size=8)


def _run_op(op, root: Path, protected: dict[str, bytes]) -> None:
    kind = op[0]
    if kind == "prepare":
        _, name, source, force = op
        request = PrepareRequest(data_dir=Path("data"), inputs=(source,), name=name, force=force)
        with contextlib.suppress(LstmlabError):  # a refusal is fine; a lost file is not
            prepare_corpus("text", request)
    elif kind == "claim":
        _, run_dir, force, resume, action = op
        try:
            lock = runs.claim_run_dir(run_dir, force=force, resume=resume, data_root="data")
        except LstmlabError:
            return
        run = Path(run_dir)
        if action == "abandon":
            lock.abandon()
            return
        try:
            with lock:
                (run / "config.yaml").write_text("seed: 0\n")
                if action == "fail-early":
                    raise RuntimeError("no such corpus")
                runs.append_metrics(run, {"kind": "train", "step": 1})
                (run / "checkpoints" / "last.pt").write_bytes(b"weights")
                if action == "fail-late":
                    raise RuntimeError("loss became nan")
                if action == "ctrl-c":
                    raise KeyboardInterrupt
                runs.append_metrics(run, {"kind": "end", "step": 1})
        except (RuntimeError, KeyboardInterrupt):
            pass
    else:
        folder = root / op[1]
        if folder.is_dir() and not folder.is_symlink():
            name = f"{op[1]}/user-{len(protected)}.txt"
            (root / name).write_text(name)
            protected[name] = name.encode()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_no_user_file_ever_changes_or_disappears(ops):
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as outer:
        root = Path(outer) / "work"
        for rel, text in USER_FILES.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        protected = {rel: text.encode() for rel, text in USER_FILES.items()}
        os.chdir(root)
        try:
            for op in ops:
                _run_op(op, root, protected)
                for rel, data in protected.items():
                    path = root / rel
                    assert path.is_file() and path.read_bytes() == data, (op, rel)
            assert sorted(p.name for p in Path(outer).iterdir()) == ["work"]  # nothing above cwd
        finally:
            os.chdir(cwd)


# ---------------------------------------------------------------- the commands themselves

OUTCOMES: list[tuple[str, int]] = []  # (command, exit code) of every call, for the check below
CLI_RUNS = ["runs/r1", "runs/r1", "runs/r2", ".", "runs/mine", "data", "in"]  # r1 is trained
cli_prepare = st.tuples(st.just("prepare"), st.sampled_from(["book", "c1"]), st.booleans())
cli_train = st.tuples(
    st.just("train"),
    st.sampled_from(CLI_RUNS),
    st.sampled_from(["fresh", "force", "resume"]),
    st.integers(2, 4),  # max_steps
)
cli_read = st.tuples(st.sampled_from(["eval", "compare", "sample"]), st.sampled_from(CLI_RUNS))
cli_drop = st.tuples(
    st.just("drop"), st.sampled_from(["runs/r1", "data/book", "runs/r1/checkpoints"])
)
cli_operations = st.lists(
    st.one_of(cli_prepare, cli_train, cli_read, cli_drop), min_size=2, max_size=6
)


def _cli_args(op) -> list[str] | None:
    kind = op[0]
    if kind == "prepare":
        force = ["--force"] if op[2] else []
        return ["prepare", "text", "in/book.txt", "--name", op[1], "--data-dir", "data", *force]
    if kind == "train":
        _, run, how, steps = op
        budget = ["--set", f"train.max_steps={steps}", "--device", "cpu"]
        if how == "resume":
            return ["train", "--resume", run, *budget]
        return [
            "train",
            "recipe.yaml",
            "--run-dir",
            run,
            *budget,
            *(["--force"] if how == "force" else []),
        ]
    if kind == "eval":
        return ["eval", op[1], "--device", "cpu"]
    if kind == "sample":
        return ["sample", op[1], "--length", "3", "--seed", "0", "--device", "cpu"]
    if kind == "compare":
        return ["compare", op[1]]
    return None


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=cli_operations)
def test_random_command_sequences_keep_user_files_and_never_trace_back(ops):
    """prepare / train / --force / --resume / eval / compare / sample through the CLI."""
    import yaml
    from typer.testing import CliRunner

    from lstmlab.cli.app import app

    from support import TINY_RECIPE

    recipe = {**TINY_RECIPE, "data": {"corpus": "c1", "data_dir": "data"}}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as outer:
        root = Path(outer) / "work"
        for rel, text in {**USER_FILES, "recipe.yaml": yaml.safe_dump(recipe)}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        protected = {rel: (root / rel).read_bytes() for rel in [*USER_FILES, "recipe.yaml"]}
        os.chdir(root)
        try:
            # a corpus and a run exist, so every later command has real work to act on
            start = [
                ("prepare", "c1", False),
                ("train", "runs/r1", "fresh", 2),
                ("eval", "runs/r1"),
            ]
            for op in [*start, *ops]:
                args = _cli_args(op)
                if args is None:
                    _run_op(op, root, protected)
                    continue
                result = CliRunner().invoke(app, args)
                OUTCOMES.append((args[0], result.exit_code))
                assert result.exit_code in (0, 1, 2), (args, result.output)
                assert "Traceback" not in result.output, (args, result.output)
                for rel, data in protected.items():
                    path = root / rel
                    assert path.is_file() and path.read_bytes() == data, (args, rel)
            assert sorted(p.name for p in Path(outer).iterdir()) == ["work"]
        finally:
            os.chdir(cwd)


def test_the_random_sequences_did_real_work():
    """The property above is only worth something if commands succeeded too, not just refused."""
    if not OUTCOMES:
        test_random_command_sequences_keep_user_files_and_never_trace_back()
    succeeded = {command for command, code in OUTCOMES if code == 0}
    assert {"prepare", "train", "eval"} <= succeeded, OUTCOMES
