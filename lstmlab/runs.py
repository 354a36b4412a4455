"""Run directories: where a run's recipe, metrics, checkpoints and evaluation live.

runs/<run>/config.yaml       the resolved recipe (every default filled in)
runs/<run>/metrics.jsonl     one JSON object per log step and per validation
runs/<run>/checkpoints/      last.pt, best.pt
runs/<run>/eval.json         what `lstmlab eval` measured
runs/<run>/.lock             the process training the run: pid, host, start time

A run folder belongs to lstmlab only while it holds nothing else: `claim_run_dir`
(the one way a training start gets its folder) creates a new folder, or replaces
an old run with --force by deleting only the entries listed above, and refuses
the working directory, its parents, the data root and any folder that is not a
run. One process writes a run at a time: the lock file is created atomically
(a hard link of a complete temporary file, so a reader never sees half a lock)
and a lock whose process is gone is taken over with a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lstmlab.errors import CheckpointError, LstmlabError, UsageError
from lstmlab.files import atomic_write_text, current_umask, listing

try:
    import fcntl
except ImportError:  # Windows has no fcntl: the takeover guard is then best effort
    fcntl = None

CHECKPOINTS = "checkpoints"
LOCK = ".lock"
RUN_FILES = frozenset(
    {"config.yaml", "metrics.jsonl", "eval.json", "running.json", "trackers.json"}
)
# Folders the experiment trackers (trackers.py) write inside a run; wholly lstmlab's.
TRACKER_DIRS = frozenset({"tensorboard", "wandb", "mlruns"})
# running.json is the marker older lstmlab versions wrote instead of the lock.
STALE_S = 15 * 60  # a lock from another host whose run wrote nothing for this long is stale
PID_REUSE_SLACK_S = 30.0  # a process started this long after its lock was written is another one
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# what training writes into checkpoints/: last.pt, best.pt, step-N.pt and save_checkpoint's
# temporaries (.last.pt.<random>.tmp); a user's own *.pt there is not ours to delete
_CHECKPOINT_FILE = re.compile(r"(last|best|step-\d+)\.pt|\.(last|best|step-\d+)\.pt\.[^/]+\.tmp")


class RunBusyError(LstmlabError):
    """Another live process holds the run's lock (one writer per run folder)."""

    exit_code = 1


def validate_run_name(name: str) -> str:
    """`name` if it can name a run folder (letters, digits, '.', '_', '-', not starting with '.')."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} cannot be a run name",
            hint="use letters, digits, '.', '_' or '-', not starting with '.' (e.g. lstm-ptb-1)",
        )
    return name


def default_run_name(recipe_path: Path | None, corpus: str, cell: str) -> str:
    """<recipe>-<corpus>-<date-time>, with characters a run name may not hold replaced by '-'."""
    stem = recipe_path.stem if recipe_path else cell
    name = re.sub(r"[^A-Za-z0-9._-]", "-", f"{stem}-{corpus}-{time.strftime('%Y%m%d-%H%M%S')}")
    return name.lstrip(".-") or f"run-{time.strftime('%Y%m%d-%H%M%S')}"


def is_run_dir(path: Path | str) -> bool:
    """A folder holding config.yaml, metrics.jsonl or checkpoints/ (what `lstmlab train` writes)."""
    path = Path(path)
    return path.is_dir() and (
        (path / "config.yaml").is_file()
        or (path / "metrics.jsonl").is_file()
        or (path / CHECKPOINTS).is_dir()
    )


# ---------------------------------------------------------------- the lock


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether process `pid` runs on this host (and, given `started`, is not a later reuse of the pid)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except (OSError, OverflowError):
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: the signal test is all there is
    state, start = stat
    if state in ("Z", "X"):  # killed, waiting only for its parent to reap it
        return False
    return started is None or start is None or start <= started + PID_REUSE_SLACK_S


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """(state letter, start time in unix seconds) from /proc, or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # comm may hold spaces; fields[0] is field 3
    try:
        ticks = int(fields[19])  # field 22: start time in clock ticks after boot
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return fields[0], boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return fields[0] if fields else "?", None


def _host() -> str:
    return socket.gethostname()


def _parse_lock(data: bytes | None) -> dict | None:
    """The lock's record, or None when it is torn or not ours."""
    if data is None:
        return None
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if (
        not isinstance(info, dict)
        or not isinstance(info.get("pid"), int)
        or isinstance(info.get("pid"), bool)
        or not isinstance(info.get("host"), str)
        or not isinstance(info.get("started"), (int, float))
    ):
        return None
    return info


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return b""  # unreadable counts as torn


def _lock_live(run_dir: Path, info: dict | None) -> bool:
    """Whether the process named by a parsed lock still trains the run."""
    if info is None or info.get("failed"):
        return False
    if info["host"] == _host():
        return pid_alive(info["pid"], info["started"])
    writes = [p for p in (run_dir / LOCK, run_dir / "metrics.jsonl") if p.exists()]
    last_write = max((p.stat().st_mtime for p in writes), default=info["started"])
    return time.time() - last_write < STALE_S


def lock_holder(run_dir: Path | str) -> dict | None:
    """The record ({pid, host, started, command}) of the live process holding the run, else None."""
    run_dir = Path(run_dir)
    info = _parse_lock(_read_bytes(run_dir / LOCK))
    return info if _lock_live(run_dir, info) else None


def failure(run_dir: Path | str) -> str | None:
    """The error a run's training ended with, when its lock was left marked failed."""
    info = _parse_lock(_read_bytes(Path(run_dir) / LOCK))
    return str(info["failed"]) if info is not None and info.get("failed") else None


def has_lock(run_dir: Path | str) -> bool:
    """Whether a lock file is present, live or not (a dead one means the run crashed)."""
    return os.path.lexists(Path(run_dir) / LOCK)


def _busy(run_dir: Path, info: dict) -> RunBusyError:
    pid, host = info["pid"], info["host"]
    if host == _host():
        hint = f"wait for it to finish, or stop it with `kill {pid}`"
    else:
        hint = f"if that process is gone, delete {run_dir / LOCK} and try again"
    return RunBusyError(f"{run_dir} is being trained by pid {pid} on host {host}", hint=hint)


@contextlib.contextmanager
def _guard(folder: Path):
    """Serialise lock takeovers in `folder` between processes (flock on the folder itself)."""
    fd = None
    try:
        fd = os.open(folder, os.O_RDONLY)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        pass  # no flock here (some network file systems): the takeover is then best effort
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _write_temp(folder: Path, record: dict) -> Path:
    """A complete lock record in a temporary file next to the lock, readable like other files."""
    fd, tmp = tempfile.mkstemp(prefix=f"{LOCK}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write((json.dumps(record) + "\n").encode("utf-8"))
    os.chmod(tmp, 0o666 & ~current_umask())
    return Path(tmp)


def _create_exclusive(path: Path, record: dict) -> bool:
    """Create the lock holding `record` if no lock exists; False if one does. Atomic."""
    tmp = _write_temp(path.parent, record)
    try:
        os.link(tmp, path)  # fails if the lock exists; a reader never sees it half written
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: exclusive create, then write
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(tmp.read_bytes())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _stale_warning(info: dict | None) -> str:
    if info is None:
        return "replaced an unreadable lock file; the run had crashed while starting"
    if info.get("failed"):
        return (
            f"took over the lock of pid {info['pid']}, whose training had failed ({info['failed']})"
        )
    if info["host"] != _host():
        return f"took over the lock of pid {info['pid']} on host {info['host']}"
    return f"took over the lock of pid {info['pid']} (no longer running); the run had crashed"


def _acquire(run_dir: Path, command: str | None) -> RunLock:
    """Take the run's lock, or raise RunBusyError naming the live holder."""
    path = run_dir / LOCK
    record = {
        "pid": os.getpid(),
        "host": _host(),
        "started": time.time(),
        "command": command,
        "token": secrets.token_hex(8),
    }
    warnings: list[str] = []
    for _attempt in range(8):
        if _create_exclusive(path, record):
            return RunLock(run_dir=run_dir, record=record, warnings=warnings)
        data = _read_bytes(path)
        if data is None:
            continue  # released meanwhile: try again
        info = _parse_lock(data)
        live = info is not None and not info.get("failed")
        if live and (info["host"] != _host() or pid_alive(info["pid"], info["started"])):
            raise _busy(run_dir, info)
        with _guard(run_dir):
            if _read_bytes(path) == data:  # still the stale lock we judged: only then remove it
                path.unlink(missing_ok=True)
                warnings.append(_stale_warning(info))
    raise RunBusyError(
        f"{run_dir}: could not take its lock (other processes keep claiming it)",
        hint="make sure one `lstmlab train` runs per run folder, then try again",
    )


@dataclass
class RunLock:
    """The held lock of one run folder; `claim_run_dir` returns it, the trainer keeps it.

    `warnings` are one-line notes for the user (a crashed holder's lock taken
    over); the library never prints them. Use as a context manager: on a clean
    exit or Ctrl-C (KeyboardInterrupt, or an error with a `signum`) the lock is
    released; on any other error it stays, marked failed (`mark_failed`), so
    `compare` shows the run as failed and the next claim takes it over. To undo
    a start that failed before training, call `abandon` instead. Held locks are
    listed in `_HELD` so that a Ctrl-C that must end the process at once (one
    during an import) can still let them go (`abandon_held`).
    """

    run_dir: Path
    record: dict
    warnings: list[str] = field(default_factory=list)
    created: tuple[Path, ...] = ()  # folders claim_run_dir made, deepest first
    fresh: bool = False  # a fresh start (not a resume): abandon may remove what it wrote
    held: bool = True

    def __post_init__(self) -> None:
        if self.held:
            _HELD.append(self)

    def _let_go(self) -> None:
        self.held = False
        with contextlib.suppress(ValueError):
            _HELD.remove(self)

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK

    def _still_ours(self) -> bool:
        info = _parse_lock(_read_bytes(self.path))
        return info is not None and info.get("token") == self.record["token"]

    def release(self) -> None:
        """Remove the lock if it is still ours (idempotent)."""
        if not self.held:
            return
        self._let_go()
        with _guard(self.run_dir):
            if self._still_ours():
                self.path.unlink(missing_ok=True)

    def mark_failed(self, reason: str) -> None:
        """Stop holding the run but leave the lock, marked failed: `compare` shows it failed."""
        if not self.held:
            return
        self._let_go()
        with _guard(self.run_dir):
            if self._still_ours():
                tmp = _write_temp(self.run_dir, {**self.record, "failed": reason[:300]})
                os.replace(tmp, self.path)

    def abandon(self) -> None:
        """Undo a fresh start that wrote no checkpoint, then release.

        A folder this claim created is removed (and the parents it created, when
        empty); in a folder that existed, the run files it wrote are removed. So
        a start that fails before its first step leaves nothing that blocks the
        retry. A run with a checkpoint, a resume, or a folder that gained a file
        lstmlab did not write keeps everything.
        """
        undo = self.held and self.fresh and not has_checkpoint(self.run_dir)
        if undo and not foreign_entries(self.run_dir):
            remove_run_entries(self.run_dir)  # still under the lock
        self.release()
        if undo and self.created:
            for folder in self.created:  # deepest first; a folder someone filled meanwhile stays
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if (
            exc_type is None
            or issubclass(exc_type, KeyboardInterrupt)
            or getattr(exc, "signum", None)
        ):
            self.release()
        else:
            self.mark_failed(f"{exc_type.__name__}: {exc}")
        return False


_HELD: list[RunLock] = []  # the locks this process holds, oldest first


def abandon_held() -> None:
    """Let go of every lock this process holds, as an interrupted `fit` does (`abandon`:
    a fresh start that saved nothing is undone, anything else is released)."""
    for lock in reversed(list(_HELD)):
        with contextlib.suppress(Exception):
            lock.abandon()


def lock_folder(folder: Path | str, command: str | None = None) -> RunLock:
    """Take the one-writer lock of another lstmlab folder (a study's) as of a run folder."""
    return _acquire(Path(folder), command)


# ---------------------------------------------------------------- claiming a folder


def _is_temp_of(name: str, names) -> bool:
    return name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in names)


def foreign_entries(run_dir: Path | str) -> list[str]:
    """Entries of a run folder that `lstmlab train`/`eval` never write (a user's files), sorted."""
    run_dir = Path(run_dir)
    found = []
    for entry in run_dir.iterdir():
        name = entry.name
        if _is_lock_file(name):
            continue
        if name == CHECKPOINTS and entry.is_dir() and not entry.is_symlink():
            for ckpt in entry.iterdir():
                ours = _CHECKPOINT_FILE.fullmatch(ckpt.name) is not None
                if not ours or ckpt.is_symlink() or not ckpt.is_file():
                    found.append(f"{CHECKPOINTS}/{ckpt.name}")
        elif (
            (name in RUN_FILES or _is_temp_of(name, RUN_FILES))
            and (entry.is_file() and not entry.is_symlink())
            or name in TRACKER_DIRS
            and entry.is_dir()
            and not entry.is_symlink()
        ):
            continue
        else:
            found.append(name)
    return sorted(found)


def _is_lock_file(name: str) -> bool:
    return name == LOCK or (name.startswith(f"{LOCK}.") and name.endswith(".tmp"))


def never_started(run_dir: Path | str) -> bool:
    """A run folder whose start failed before its first step: no checkpoint, metric or eval.

    Nothing in it is worth keeping, so a fresh start may reuse it without --force
    (a start killed before its first step must not block the retry).
    """
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    return (
        not has_checkpoint(run_dir)
        and not (run_dir / "eval.json").exists()
        and (not metrics.exists() or (metrics.is_file() and not read_metrics(run_dir)))
    )


def has_checkpoint(run_dir: Path | str) -> bool:
    """Whether any checkpoint (*.pt) was written into the run folder."""
    folder = Path(run_dir) / CHECKPOINTS
    return folder.is_dir() and any(p.suffix == ".pt" and p.is_file() for p in folder.iterdir())


def remove_run_entries(run_dir: Path | str) -> None:
    """Delete what a run writes (config, metrics, eval, checkpoints), never anything else; keeps the lock."""
    run_dir = Path(run_dir)
    foreign = set(foreign_entries(run_dir))
    for entry in run_dir.iterdir():
        if entry.name in foreign or _is_lock_file(entry.name):
            continue
        if entry.name == CHECKPOINTS:
            for ckpt in entry.iterdir():
                if f"{CHECKPOINTS}/{ckpt.name}" not in foreign:
                    ckpt.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a user's file in checkpoints/ keeps the folder
                entry.rmdir()
        elif entry.name in TRACKER_DIRS:
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_fresh_place(run_dir: Path, data_root: Path | None) -> None:
    """Refuse the working directory, its parents and the data root; check the folder's name."""
    target = run_dir.resolve()
    cwd = Path.cwd().resolve()
    if _inside(cwd, target):
        raise UsageError(
            f"{run_dir} is the working directory or one of its parents; it cannot be a run folder",
            hint="name a new folder for the run, e.g. --run-dir runs/NAME",
        )
    if data_root is not None:
        root = Path(data_root).resolve()
        if _inside(target, root):
            raise UsageError(
                f"run folder {run_dir} is inside the data root {data_root}; runs and corpora stay apart",
                hint="name a folder outside it, e.g. --run-dir runs/NAME",
            )
        if target in root.parents:
            raise UsageError(
                f"{run_dir} holds the data root {data_root}; it cannot be a run folder",
                hint="name a new folder for the run, e.g. --run-dir runs/NAME",
            )
    validate_run_name(run_dir.name)


def _make_dirs(run_dir: Path) -> list[Path]:
    """Create run_dir and missing parents; the folders this call created, deepest first."""
    missing = []
    folder = run_dir
    while not os.path.lexists(folder):
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    created = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # made by someone else meanwhile: not ours to remove
        created.append(folder)
    return created[::-1]


def _check_resumable(run_dir: Path) -> None:
    if not run_dir.is_dir() or not is_run_dir(run_dir):
        what = "does not exist" if not os.path.lexists(run_dir) else "is not an lstmlab run folder"
        raise UsageError(
            f"{run_dir} {what}; there is nothing to resume",
            hint="pass a run folder written by `lstmlab train` to --resume",
        )
    if not checkpoint_path(run_dir, "last").is_file():
        raise UsageError(
            f"{run_dir} has no checkpoints/last.pt to resume from",
            hint=f"start it afresh with `lstmlab train RECIPE --run-dir {run_dir} --force`",
        )


def claim_run_dir(
    run_dir: Path | str,
    *,
    force: bool = False,
    resume: bool = False,
    data_root: Path | str | None = None,
    command: str | None = None,
) -> RunLock:
    """Make `run_dir` this process's run folder and return its held lock (the one way to start training).

    Resume: `run_dir` must be a run with checkpoints/last.pt. Fresh start: it must
    not exist, or be empty, or be an lstmlab run folder holding nothing but run
    files that never started (`never_started`) or, only with `force`, any such run
    folder; the old run's entries are deleted after the lock is taken.
    Refused whatever the flags: the working directory and its parents, the data
    root and anything in it, a folder that is not a run, a bad name. A run locked
    by a live process raises RunBusyError. `command` is recorded in the lock.
    """
    run_dir = Path(run_dir)
    if resume:
        _check_resumable(run_dir)
        lock = _acquire(run_dir, command)
        (run_dir / CHECKPOINTS).mkdir(exist_ok=True)
        return lock
    check_fresh_place(run_dir, None if data_root is None else Path(data_root))
    if run_dir.is_symlink() and not run_dir.exists():
        raise UsageError(
            f"run folder {run_dir} is a symbolic link to nothing",
            hint="remove the link, or name another folder",
        )
    created = [] if os.path.lexists(run_dir) else _make_dirs(run_dir)
    if not run_dir.is_dir():
        raise UsageError(
            f"run folder {run_dir} exists and is not a folder",
            hint="name a new folder for the run, e.g. --run-dir runs/NAME",
        )
    replace = unstarted = False
    if run_dir not in created:  # it was there before (or another process just made it)
        holder = lock_holder(run_dir)
        if holder is not None:
            raise _busy(run_dir, holder)
        if any(not _is_lock_file(p.name) for p in run_dir.iterdir()):
            if not is_run_dir(run_dir):
                raise UsageError(
                    f"run folder {run_dir} exists and is not an lstmlab run folder; it is never replaced",
                    hint="name a new folder for the run, e.g. --run-dir runs/NAME",
                )
            _refuse_foreign(run_dir)
            unstarted = never_started(run_dir)
            if not force and not unstarted:
                resume_hint = (
                    f"resume it with `lstmlab train --resume {run_dir}`, "
                    if checkpoint_path(run_dir, "last").is_file()
                    else ""
                )
                raise UsageError(
                    f"run folder {run_dir} already exists",
                    hint=f"{resume_hint}pick another --run-dir, or pass --force to replace it",
                )
            replace = True
    try:
        lock = _acquire(run_dir, command)
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    lock.created, lock.fresh = tuple(created), True
    if replace:
        try:
            _refuse_foreign(run_dir)  # again under the lock: nothing was added meanwhile
            if not force and not never_started(run_dir):
                raise UsageError(
                    f"run folder {run_dir} already exists", hint="pass --force to replace it"
                )
        except BaseException:
            lock.release()
            raise
        remove_run_entries(run_dir)
        if unstarted and not force:
            lock.warnings.append(
                f"reused {run_dir}: its earlier start never reached a first step or checkpoint"
            )
    (run_dir / CHECKPOINTS).mkdir(exist_ok=True)
    return lock


def _refuse_foreign(run_dir: Path) -> None:
    foreign = foreign_entries(run_dir)
    if foreign:
        raise UsageError(
            f"run folder {run_dir} also holds files lstmlab did not write ({listing(foreign)}); "
            "--force replaces only a run",
            hint=f"move them out of {run_dir}, or name another --run-dir",
        )


def prepare_run_dir(run_dir: Path, *, force: bool = False) -> Path:
    """Create a fresh run folder under `claim_run_dir`'s rules and return it (lock not kept).

    For callers that train without holding the lock (tests, notebooks); the CLI
    uses `claim_run_dir` and keeps its lock for the whole run.
    """
    claim_run_dir(run_dir, force=force).release()
    return Path(run_dir)


def checkpoint_path(run_dir: Path, which: str) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{which}.pt"


def resolve_checkpoint(run_or_checkpoint: Path, which: str | Path = "best") -> Path:
    """The checkpoint file meant: `which` (best, last or a .pt path) of a run folder, or a .pt itself.

    Never falls back to another checkpoint than the one asked for: evaluating
    last.pt when best.pt was meant would report another model's figures. A
    missing one is an error naming the checkpoints that exist.
    """
    path = Path(run_or_checkpoint)
    if which not in ("best", "last"):  # a --checkpoint PATH: as given, else inside the run folder
        for cand in (Path(which), path / which if path.is_dir() else None):
            if cand is not None and cand.is_file():
                return cand
        raise CheckpointError(
            f"checkpoint {which} does not exist",
            hint="pass --checkpoint best, last, or the path of a .pt file written by `lstmlab train`",
        )
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist", hint="pass a run folder (runs/<run>) or a checkpoint file"
        )
    cand = checkpoint_path(path, str(which))
    if cand.is_file():
        return cand
    present = sorted(
        p.name for p in (path / CHECKPOINTS).glob("*.pt") if not p.name.startswith(".")
    )
    if not present:
        raise CheckpointError(
            f"{path} holds no checkpoint",
            hint="train it first, or point at a run folder with checkpoints/",
        )
    other = "last" if which == "best" else "best"
    hint = (
        f"pass --checkpoint {other}"
        if f"{other}.pt" in present
        else f"pass --checkpoint {path / CHECKPOINTS / present[-1]}"
    )
    raise CheckpointError(
        f"{path} has no {which}.pt checkpoint (it has {', '.join(present)})", hint=hint
    )


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to: <run>/checkpoints/x.pt -> <run>; else its folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else checkpoint.parent


def write_config(run_dir: Path, config: dict) -> None:
    (Path(run_dir) / "config.yaml").write_text(
        yaml.safe_dump(config, sort_keys=False), encoding="utf-8"
    )


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """Every readable record; a torn last line (crash mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop records written after the checkpoint's step (they will be redone) and
    every `end` and `stop` record (the resumed run is neither finished nor stopped); the file
    is replaced atomically."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    kept = [
        r
        for r in read_metrics(run_dir)
        if isinstance(r, dict) and r.get("kind") not in ("end", "stop") and _step_of(r) <= step
    ]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _step_of(record: dict) -> float:
    step = record.get("step", 0)
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else 0


# ---------------------------------------------------------------- finding runs

LATEST = "latest"


def _last_written(run_dir: Path) -> float:
    """When the run last wrote anything of its own (metrics, config, checkpoints)."""
    paths = [run_dir / "metrics.jsonl", run_dir / "config.yaml", run_dir / LOCK]
    paths += [checkpoint_path(run_dir, w) for w in ("last", "best")]
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def list_runs(parent: Path | str = "runs") -> list[Path]:
    """Every run folder directly under `parent`, most recently written first."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    found = [p for p in parent.iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(found, key=lambda p: (_last_written(p), p.name), reverse=True)


def resolve_run(arg: Path | str, runs_dir: Path | str = "runs") -> Path:
    """`latest` -> the most recently written run folder under `runs_dir`; anything else as given."""
    if str(arg) != LATEST:
        return Path(arg)
    found = list_runs(runs_dir)
    if not found:
        raise UsageError(
            f"`latest` names the newest run folder in {runs_dir}/, and it holds none",
            hint="train one first (lstmlab train RECIPE), or pass a run folder",
        )
    return found[0]
