"""Run folders: names, claiming (what --force may replace), the one-writer lock, metrics truncation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstmlab import runs
from lstmlab.errors import UsageError
from lstmlab.runs import RunBusyError, claim_run_dir

from support import REPO

HOST = socket.gethostname()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def old_run(folder: Path, *, last: bool = True) -> Path:
    """A run folder as an earlier `lstmlab train` + `eval` left it."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text("seed: 0\n")
    (folder / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    (folder / "eval.json").write_text("{}")
    (folder / "checkpoints" / "best.pt").write_bytes(b"old best")
    (folder / "checkpoints" / ".last.pt.abc.tmp").write_bytes(b"torn")
    if last:
        (folder / "checkpoints" / "last.pt").write_bytes(b"old last")
    return folder


def write_lock(run: Path, pid: int, host: str = HOST, started: float | None = None, **extra):
    record = {"pid": pid, "host": host, "started": time.time() if started is None else started}
    (run / runs.LOCK).write_text(json.dumps({**record, **extra}))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["lstm-ptb", "a.b_c-1", "X"])
def test_good_run_names(name):
    assert runs.validate_run_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "sp ace", "-x", "é"])
def test_bad_run_names(name):
    with pytest.raises(UsageError, match="cannot be a run name"):
        runs.validate_run_name(name)


def test_default_run_name_is_always_valid():
    name = runs.default_run_name(Path("my recipe (v2).yaml"), "ptb", "lstm")
    assert runs.validate_run_name(name).startswith("my-recipe--v2--ptb-")


def test_is_run_dir(tmp_path):
    assert not runs.is_run_dir(tmp_path / "none")
    for entry in ("config.yaml", "metrics.jsonl", "checkpoints"):
        folder = tmp_path / entry.replace(".", "_")
        folder.mkdir()
        assert not runs.is_run_dir(folder)
        if entry == "checkpoints":
            (folder / entry).mkdir()
        else:
            (folder / entry).write_text("")
        assert runs.is_run_dir(folder)


# ---------------------------------------------------------------- claiming


def test_fresh_claim_makes_the_folder_and_holds_the_lock(tmp_path):
    run = tmp_path / "runs" / "r"
    with claim_run_dir(run, force=False, resume=False, data_root=None, command="train x") as lock:
        assert (run / "checkpoints").is_dir()
        info = json.loads((run / runs.LOCK).read_text())
        assert (info["pid"], info["host"], info["command"]) == (os.getpid(), HOST, "train x")
        assert abs(info["started"] - time.time()) < 60
        assert runs.lock_holder(run)["pid"] == os.getpid() and lock.warnings == []
        assert oct((run / runs.LOCK).stat().st_mode & 0o777) == oct(0o666 & ~runs.current_umask())
        (run / "checkpoints" / "last.pt").write_bytes(b"ckpt")
    assert not (run / runs.LOCK).exists() and runs.lock_holder(run) is None
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]  # no lock temp left


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("where", [".", "..", "cwd-abs", "root"])
def test_working_directory_and_its_parents_are_refused(tmp_path, force, where):
    (tmp_path / "mine.txt").write_text("precious")
    run_dir = {"cwd-abs": tmp_path, "root": Path("/")}.get(where, Path(where))
    with pytest.raises(UsageError, match="working directory or one of its parents"):
        claim_run_dir(run_dir, force=force, resume=False, data_root=None)
    assert (tmp_path / "mine.txt").read_text() == "precious"
    assert not (tmp_path / runs.LOCK).exists()


@pytest.mark.parametrize("force", [False, True])
def test_data_root_is_refused(tmp_path, force):
    data = tmp_path / "data"
    old_run(data / "ptb")  # even a run-looking folder inside the data root
    before = snapshot(data)
    for run_dir in (data, data / "ptb", data / "new"):
        with pytest.raises(UsageError, match="inside the data root"):
            claim_run_dir(run_dir, force=force, resume=False, data_root=data)
    old_run(tmp_path / "outer")
    (tmp_path / "outer" / "data").mkdir()
    with pytest.raises(UsageError, match="holds the data root"):
        claim_run_dir(tmp_path / "outer", force=force, resume=False, data_root="outer/data")
    assert snapshot(data) == before and not (data / "new").exists()


@pytest.mark.parametrize("force", [False, True])
def test_folder_that_is_not_a_run_is_never_replaced(tmp_path, force):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("precious")
    (mine / "sub" / "data.csv").write_text("1,2")
    before = snapshot(mine)
    with pytest.raises(UsageError, match="is not an lstmlab run folder; it is never replaced"):
        claim_run_dir(mine, force=force, resume=False, data_root=None)
    assert snapshot(mine) == before and not (mine / runs.LOCK).exists()


def test_file_in_place_of_the_run_is_refused(tmp_path):
    (tmp_path / "r").write_text("precious")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        claim_run_dir(tmp_path / "r", force=True, resume=False, data_root=None)
    assert (tmp_path / "r").read_text() == "precious"


def test_bad_name_is_refused_before_anything_is_made(tmp_path):
    with pytest.raises(UsageError, match="cannot be a run name"):
        claim_run_dir(tmp_path / "runs" / "a b", force=False, resume=False, data_root=None)
    assert not (tmp_path / "runs").exists()


def test_existing_run_needs_force(tmp_path):
    run = old_run(tmp_path / "r")
    before = snapshot(run)
    with pytest.raises(UsageError, match="run folder .* already exists") as info:
        claim_run_dir(run, force=False, resume=False, data_root=None)
    assert f"lstmlab train --resume {run}" in info.value.hint and "--force" in info.value.hint
    assert snapshot(run) == before


def test_forced_replace_keeps_nothing_of_the_old_run(tmp_path):
    run = old_run(tmp_path / "r")
    (run / "running.json").write_text("{}")  # older lstmlab's marker
    (run / ".metrics.jsonl.x1.tmp").write_text("torn")
    with claim_run_dir(run, force=True, resume=False, data_root=tmp_path / "data") as lock:
        assert sorted(p.name for p in run.iterdir()) == [runs.LOCK, "checkpoints"]
        assert list((run / "checkpoints").iterdir()) == []
        assert lock.fresh and lock.created == ()


@pytest.mark.parametrize(
    "foreign",
    ["notes.txt", "checkpoints/mine.txt", "checkpoints/pretrained.pt", "plots/", "config.yaml/"],
)
def test_forced_replace_refuses_a_run_holding_a_user_file(tmp_path, foreign):
    run = old_run(tmp_path / "r")
    if foreign == "config.yaml/":
        (run / "config.yaml").unlink()
        (run / "config.yaml").mkdir()
    elif foreign.endswith("/"):
        (run / foreign).mkdir()
    else:
        (run / foreign).write_text("mine")
    before = snapshot(run)
    with pytest.raises(UsageError, match="also holds files lstmlab did not write") as info:
        claim_run_dir(run, force=True, resume=False, data_root=None)
    assert foreign.rstrip("/") in info.value.message
    assert snapshot(run) == before and not (run / runs.LOCK).exists()


def test_empty_folder_is_used_without_force(tmp_path):
    (tmp_path / "r").mkdir()
    lock = claim_run_dir(tmp_path / "r", force=False, resume=False, data_root=None)
    assert lock.created == () and (tmp_path / "r" / "checkpoints").is_dir()
    lock.release()


def test_resume_needs_a_last_checkpoint_and_deletes_nothing(tmp_path):
    with pytest.raises(UsageError, match="does not exist; there is nothing to resume"):
        claim_run_dir(tmp_path / "none", force=False, resume=True, data_root=None)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    with pytest.raises(UsageError, match="is not an lstmlab run folder"):
        claim_run_dir(tmp_path / "mine", force=False, resume=True, data_root=None)
    run = old_run(tmp_path / "r", last=False)
    with pytest.raises(UsageError, match="has no checkpoints/last.pt") as info:
        claim_run_dir(run, force=False, resume=True, data_root=None)
    assert "--force" in info.value.hint
    (run / "checkpoints" / "last.pt").write_bytes(b"ckpt")
    before = snapshot(run)
    with claim_run_dir(run, force=False, resume=True, data_root=None) as lock:
        assert not lock.fresh and (run / runs.LOCK).is_file()
        assert {k: v for k, v in snapshot(run).items() if k != runs.LOCK} == before
    assert snapshot(run) == before


# ---------------------------------------------------------------- the lock, two real processes

HOLDER = """
import sys, time
from lstmlab.runs import claim_run_dir
lock = claim_run_dir(sys.argv[1], force=False, resume=sys.argv[2] == "resume", data_root=None)
print("claimed", *lock.warnings, flush=True)
time.sleep(120)
"""


def start_holder(run: Path, mode: str = "fresh") -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    if not line.startswith("claimed"):
        proc.kill()
        raise AssertionError(f"holder did not claim the run: {line!r} {proc.stderr.read()}")
    return proc


def test_second_writer_is_refused_then_a_crashed_holder_is_taken_over(tmp_path):
    run = Path("runs") / "x"  # relative, as a user types it: the message repeats it
    proc = start_holder(run)
    try:
        (run / "checkpoints" / "last.pt").write_bytes(b"ckpt")
        (run / "config.yaml").write_text("seed: 0\n")
        before = snapshot(run)
        for force, resume in ((False, False), (True, False), (False, True)):
            with pytest.raises(RunBusyError) as info:
                claim_run_dir(run, force=force, resume=resume, data_root=None)
            assert info.value.message == f"runs/x is being trained by pid {proc.pid} on host {HOST}"
            assert f"kill {proc.pid}" in info.value.hint and info.value.exit_code == 1
        assert snapshot(run) == before  # --force deleted nothing of the live run
        assert runs.lock_holder(run)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert runs.lock_holder(run) is None and runs.has_lock(run)
    with claim_run_dir(run, force=False, resume=True, data_root=None) as lock:
        assert lock.warnings == [
            f"took over the lock of pid {proc.pid} (no longer running); the run had crashed"
        ]
        assert json.loads((run / runs.LOCK).read_text())["pid"] == os.getpid()
    assert not runs.has_lock(run)


def test_a_lock_from_another_host_is_refused_with_how_to_clear_it(tmp_path):
    run = old_run(tmp_path / "r")
    write_lock(run, 4242, host="node-17")
    with pytest.raises(RunBusyError, match="is being trained by pid 4242 on host node-17") as info:
        claim_run_dir(run, force=False, resume=True, data_root=None)
    assert info.value.hint == f"if that process is gone, delete {run / runs.LOCK} and try again"
    (run / runs.LOCK).unlink()
    claim_run_dir(run, force=False, resume=True, data_root=None).release()


@pytest.mark.parametrize("content", [b"", b"{torn", b"\xff\xfe", b'{"pid": "x"}', b"[1, 2]"])
def test_torn_lock_is_taken_over_with_a_warning(tmp_path, content):
    run = old_run(tmp_path / "r")
    (run / runs.LOCK).write_bytes(content)
    lock = claim_run_dir(run, force=False, resume=True, data_root=None)
    assert lock.warnings == ["replaced an unreadable lock file; the run had crashed while starting"]
    assert json.loads((run / runs.LOCK).read_text())["pid"] == os.getpid()
    lock.release()


def test_reused_pid_and_zombie_count_as_dead(tmp_path):
    assert runs.pid_alive(os.getpid()) and runs.pid_alive(os.getpid(), time.time())
    if Path("/proc/self/stat").exists():
        # this process started long after 1970: a lock that old names another process
        assert not runs.pid_alive(os.getpid(), started=0.0)
        zombie = subprocess.Popen([sys.executable, "-c", "pass"])
        deadline = time.time() + 30
        while runs.pid_alive(zombie.pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not runs.pid_alive(zombie.pid)  # exited, not yet reaped
        zombie.wait()
    assert not runs.pid_alive(dead_pid()) and not runs.pid_alive(0) and not runs.pid_alive(-5)


def test_only_one_of_several_racing_processes_takes_over_a_stale_lock(tmp_path):
    run = old_run(tmp_path / "r")
    write_lock(run, dead_pid())
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    racer = """
import sys, time
from lstmlab.runs import RunBusyError, claim_run_dir
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    lock = claim_run_dir(sys.argv[1], force=False, resume=True, data_root=None)
except RunBusyError:
    print("busy", flush=True)
else:
    print("won", flush=True)
    time.sleep(3)
"""
    start_at = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", racer, str(run), start_at],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["busy", "busy", "busy", "won"]


def test_failed_training_leaves_a_failed_lock_that_is_taken_over(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(RuntimeError), claim_run_dir(run, force=False, resume=False, data_root=None):
        (run / "checkpoints" / "last.pt").write_bytes(b"ckpt")
        raise RuntimeError("loss is nan")
    info = json.loads((run / runs.LOCK).read_text())
    assert info["failed"] == "RuntimeError: loss is nan" and runs.lock_holder(run) is None
    lock = claim_run_dir(run, force=False, resume=True, data_root=None)
    assert lock.warnings == [
        f"took over the lock of pid {os.getpid()}, whose training had failed (RuntimeError: loss is nan)"
    ]
    lock.release()


def test_ctrl_c_after_a_checkpoint_releases(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt), claim_run_dir(run, force=False, resume=False):
        (run / "checkpoints" / "last.pt").write_bytes(b"ckpt")
        raise KeyboardInterrupt
    assert not runs.has_lock(run) and (run / "checkpoints" / "last.pt").is_file()


# ---------------------------------------------------------------- abandon


def test_abandon_removes_the_folders_it_created(tmp_path):
    run = tmp_path / "runs" / "deep" / "r"
    lock = claim_run_dir(run, force=False, resume=False, data_root=None)
    assert lock.created == (run, run.parent, run.parent.parent)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "metrics.jsonl").write_text("")
    lock.abandon()
    assert not (tmp_path / "runs").exists()
    claim_run_dir(run, force=False, resume=False, data_root=None).release()  # the retry works


def test_failed_start_leaves_a_crashed_run_that_the_retry_reuses(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(ValueError), claim_run_dir(run, force=False, resume=False):
        (run / "config.yaml").write_text("seed: 0\n")
        (run / "metrics.jsonl").write_text("")
        raise ValueError("loss became nan")
    assert runs.never_started(run) and runs.lock_holder(run) is None and runs.has_lock(run)
    lock = claim_run_dir(run, force=False, resume=False)  # no --force needed: nothing to lose
    assert lock.warnings == [
        f"took over the lock of pid {os.getpid()}, whose training had failed (ValueError: loss became nan)",
        f"reused {run}: its earlier start never reached a first step or checkpoint",
    ]
    assert sorted(p.name for p in run.iterdir()) == [runs.LOCK, "checkpoints"]
    lock.release()


def test_abandon_in_a_folder_that_existed_removes_only_what_it_wrote(tmp_path):
    (tmp_path / "empty").mkdir()
    lock = claim_run_dir(tmp_path / "empty", force=False, resume=False)
    (tmp_path / "empty" / "config.yaml").write_text("seed: 0\n")
    lock.abandon()
    assert list((tmp_path / "empty").iterdir()) == []  # the folder was there before: it stays


def test_abandon_keeps_a_run_with_a_checkpoint_and_user_files(tmp_path):
    run = tmp_path / "r"
    lock = claim_run_dir(run, force=False, resume=False, data_root=None)
    (run / "checkpoints" / "last.pt").write_bytes(b"ckpt")
    lock.abandon()
    assert (run / "checkpoints" / "last.pt").is_file() and not runs.has_lock(run)
    other = tmp_path / "o"
    lock = claim_run_dir(other, force=False, resume=False, data_root=None)
    (other / "notes.txt").write_text("mine")
    lock.abandon()
    assert (other / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("wrote", [(), ("config.yaml", "checkpoints/")])
def test_a_start_killed_before_its_first_step_does_not_block_the_retry(tmp_path, wrote):
    run = tmp_path / "r"
    run.mkdir()
    write_lock(run, dead_pid())  # all a SIGKILLed start left behind
    for entry in wrote:
        (run / entry).mkdir() if entry.endswith("/") else (run / entry).write_text("seed: 0\n")
    lock = claim_run_dir(run, force=False, resume=False, data_root=None)
    assert "no longer running" in lock.warnings[0] and len(lock.warnings) == 1 + bool(wrote)
    assert sorted(p.name for p in run.iterdir()) == [runs.LOCK, "checkpoints"]
    lock.release()


def test_a_started_run_is_not_reused_without_force(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    with pytest.raises(UsageError, match="already exists") as info:
        claim_run_dir(run, force=False, resume=False)
    assert "--resume" not in info.value.hint  # no last.pt: resuming is not offered
    assert (run / "metrics.jsonl").read_text().startswith('{"kind"')


def test_prepare_run_dir_follows_the_same_rules(tmp_path):
    run = runs.prepare_run_dir(tmp_path / "r")
    assert (run / "checkpoints").is_dir() and not runs.has_lock(run)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    with pytest.raises(UsageError):
        runs.prepare_run_dir(tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "a.txt").read_text() == "x"


# ---------------------------------------------------------------- metrics


def test_truncate_metrics_drops_later_records_and_every_end(tmp_path):
    records = [
        {"kind": "train", "step": 5},
        {"kind": "valid", "step": 10},
        {"kind": "end", "step": 10, "reason": "max_steps"},
        {"kind": "train", "step": 12},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    runs.truncate_metrics(tmp_path, 10)
    assert runs.read_metrics(tmp_path) == records[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_list_runs_newest_first_and_latest(tmp_path):
    from lstmlab.runs import list_runs, resolve_run

    parent = tmp_path / "runs"
    for age, name in ((30, "old"), (10, "mid"), (0, "new")):
        run = parent / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("x")
        then = 1_700_000_000 - age
        os.utime(run / "config.yaml", (then, then))
    (parent / "not-a-run").mkdir()
    assert [p.name for p in list_runs(parent)] == ["new", "mid", "old"]
    assert resolve_run("latest", parent) == parent / "new"
    assert resolve_run("runs/x", parent) == Path("runs/x")
    with pytest.raises(UsageError, match="holds none"):
        resolve_run("latest", tmp_path / "empty")
