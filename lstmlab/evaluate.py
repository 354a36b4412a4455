"""Bits per character and perplexity over a whole split, with the state carried across windows.

bpc = Σ NLL (nats) / (ln 2 · characters predicted), where a token's character
count comes from the tokenizer (1 for char and byte corpora), so subword and
character models compare fairly. Per-character perplexity = 2^bpc (inf past
the float range, for a diverged model).

Under DDP each rank scores a block of the eval streams (`rows=`, blocks from
`rows_for_rank`) and the ranks' sums are one process's figures;
`should_stop` lets a Ctrl-C end a validation between two windows.

`tune_temperature` scores the whole validation split at every temperature of a
grid in one pass (the network runs once; only the softmax is repeated), as
the Mogrifier/LAMB evaluation does before reporting test bpc.

`evaluate_run` is `lstmlab eval` as a function: a run folder (or checkpoint)
in, an `EvalReport` out, on the corpus the checkpoint was trained on (its
split checksums checked against those recorded at training); `write_eval`
stores it as the run's eval.json (one checkpoint's results, never a mix of
two models).

Shapes: N tokens in a window (B x T), V vocabulary, K temperatures.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lstmlab.batching import eval_windows
from lstmlab.cells import detach_state, select_streams
from lstmlab.device import resolve_device
from lstmlab.errors import CorpusError, UsageError, VocabularyError
from lstmlab.files import atomic_write_text
from lstmlab.progress import NullProgress, Progress


@dataclass(frozen=True)
class EvalResult:
    nats: float
    tokens: int
    chars: int

    @property
    def loss(self) -> float:
        """Mean nats per token."""
        return self.nats / max(self.tokens, 1)

    @property
    def bpc(self) -> float:
        return self.nats / (math.log(2) * max(self.chars, 1))

    @property
    def perplexity(self) -> float:
        """Per-character perplexity; inf for a diverged model (2^bpc past the float range)."""
        return pow2(self.bpc)

    def to_dict(self) -> dict:
        return {**asdict(self), "loss": self.loss, "bpc": self.bpc, "perplexity": self.perplexity}


def pow2(bpc: float) -> float:
    """2^bpc, or inf where that leaves the float range (a diverging model's huge but finite bpc)."""
    try:
        return 2.0**bpc
    except OverflowError:
        return math.inf


class EvaluationStopped(Exception):
    """`should_stop` asked evaluation to end between two windows (e.g. Ctrl-C during validation).

    Not an LstmlabError: nothing is wrong with the input, the caller decides what stopping means.
    """


def bits_per_char(nats: float, chars: int) -> float:
    return nats / (math.log(2) * chars)


# LAMB/Mogrifier search the eval softmax temperature in [0.8, 1.0] on validation.
TEMPERATURE_GRID: tuple[float, ...] = tuple(round(0.8 + 0.02 * k, 2) for k in range(11))


def evaluate(
    model,
    tokens: np.ndarray,
    *,
    batch_size: int = 16,
    bptt: int = 256,
    char_lengths: np.ndarray | None = None,
    temperature: float = 1.0,
    max_tokens: int | None = None,
    device="cpu",
    progress: Progress | None = None,
    description: str = "evaluate",
    rows: slice | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult:
    """Score every token of `tokens` after the first (or of its first `max_tokens` + 1).

    `rows` and `should_stop` as in `evaluate_temperatures`.
    """
    results = evaluate_temperatures(
        model,
        tokens,
        (temperature,),
        batch_size=batch_size,
        bptt=bptt,
        char_lengths=char_lengths,
        max_tokens=max_tokens,
        device=device,
        progress=progress,
        description=description,
        rows=rows,
        should_stop=should_stop,
    )
    return results[temperature]


@torch.no_grad()
def evaluate_temperatures(
    model,
    tokens: np.ndarray,
    temperatures: tuple[float, ...],
    *,
    batch_size: int = 16,
    bptt: int = 256,
    char_lengths: np.ndarray | None = None,
    max_tokens: int | None = None,
    device="cpu",
    progress: Progress | None = None,
    description: str = "evaluate",
    rows: slice | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[float, EvalResult]:
    """One pass over `tokens`, scored at every softmax temperature: {temperature: result}.

    `rows` (a slice of the B = min(batch_size, len(tokens) − 1) streams) makes
    this call score only those rows of the very windows one process scores,
    plus the batch-1 remainder windows when `rows` holds stream B − 1 (they
    continue its state). Calls whose `rows` partition range(B) therefore sum
    to exactly the one-process nats, tokens and characters: data-parallel
    validation gives the 1-process figure. `should_stop` is asked before every
    window; when it answers True, `EvaluationStopped` is raised.
    """
    if max_tokens is not None:
        tokens = tokens[: max_tokens + 1]
    n_streams = max(1, min(batch_size, len(tokens) - 1))
    mine = range(n_streams)[rows] if rows is not None else range(n_streams)
    last_row = mine.index(n_streams - 1) if n_streams - 1 in mine else None
    lengths = torch.as_tensor(
        char_lengths if char_lengths is not None else np.ones(model.vocab_size), dtype=torch.int64
    )
    temps = torch.tensor(temperatures, dtype=torch.float32, device=device)  # (K,)
    total_nats = torch.zeros(len(temperatures), dtype=torch.float64)
    total_tokens, total_chars = 0, 0
    state = None
    progress = progress or NullProgress()
    was_training = model.training
    model.eval()
    try:
        with progress.task(description, total=len(tokens) - 1) as task:
            for x, y, is_remainder in eval_windows(tokens, batch_size, bptt):
                if should_stop is not None and should_stop():
                    raise EvaluationStopped(f"{description} stopped after {total_tokens} tokens")
                if is_remainder:
                    if last_row is None:
                        break  # another caller's rows hold the last stream
                    if state is not None and _batch_of(state) != 1:
                        state = select_streams(state, slice(last_row, last_row + 1))
                elif rows is not None:
                    if not mine:
                        continue
                    x, y = x[rows], y[rows]  # (B', T): this caller's streams
                x, y = x.to(device), y.to(device)
                if state is None:
                    state = model.initial_state(x.shape[0], device=device)
                logits, state = model(x, state)
                state = detach_state(state)
                logits = logits.float().reshape(-1, logits.shape[-1])  # (N, V)
                scaled = logits.unsqueeze(0) / temps.view(-1, 1, 1)  # (K, N, V)
                target = y.reshape(1, -1, 1).expand(len(temperatures), -1, 1)  # (K, N, 1)
                nll = -scaled.log_softmax(-1).gather(-1, target).squeeze(-1)  # (K, N)
                # summed in float64: totals barely depend on how windows are cut (rows=)
                total_nats += nll.double().sum(-1).cpu()
                total_tokens += y.numel()
                total_chars += int(lengths[y.cpu()].sum())
                task.advance(y.numel())
    finally:
        model.train(was_training)
    return {
        t: EvalResult(nats=float(n), tokens=total_tokens, chars=total_chars)
        for t, n in zip(temperatures, total_nats)
    }


def rows_for_rank(num_tokens: int, batch_size: int, rank: int, world_size: int) -> slice:
    """This rank's block of the B eval streams, for `evaluate(..., rows=)`; the blocks partition range(B).

    B = min(batch_size, num_tokens − 1) as in `eval_windows`; blocks are as even
    as can be, the first B mod world_size ranks holding one stream more; a rank
    past B gets an empty block (it scores nothing and sums zeros).
    """
    n_streams = max(1, min(batch_size, num_tokens - 1))
    base, extra = divmod(n_streams, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def tune_temperature(
    model, valid_tokens: np.ndarray, grid: tuple[float, ...] = TEMPERATURE_GRID, **kwargs
) -> tuple[float, dict[float, EvalResult]]:
    """The grid temperature with the lowest valid bpc (ties: the one nearest 1), and every result."""
    results = evaluate_temperatures(model, valid_tokens, tuple(grid), **kwargs)
    best = min(results, key=lambda t: (results[t].nats, abs(t - 1.0)))
    return best, results


_search_temperature = tune_temperature  # evaluate_run's flag of the same name hides it there


def _batch_of(state) -> int:
    return state[0][0].shape[0]


# ---------------------------------------------------------------- a run, evaluated into a report

SPLITS = ("valid", "test")


@dataclass(frozen=True)
class SplitReport:
    """One split's figures: static, and with dynamic evaluation when asked."""

    result: EvalResult
    seconds: float
    dynamic: EvalResult | None = None
    dynamic_seconds: float | None = None
    dynamic_settings: dict | None = None

    def to_json(self) -> dict:
        out = {**self.result.to_dict(), "seconds": self.seconds}
        if self.dynamic is not None:
            out["dynamic"] = {
                **self.dynamic.to_dict(),
                "seconds": self.dynamic_seconds,
                "gain_bpc": self.result.bpc - self.dynamic.bpc,
                "settings": dict(self.dynamic_settings or {}),
            }
        return out


@dataclass(frozen=True)
class TunedTemperature:
    """The softmax temperature chosen on valid, and test bpc with and without it."""

    temperature: float
    valid_bpc: dict[float, float]  # every grid temperature -> valid bpc
    untuned_temperature: float  # the recipe's eval.temperature
    test_bpc_untuned: float
    test_bpc_tuned: float

    def to_json(self) -> dict:
        return {
            "temperature": self.temperature,
            "valid_bpc": {str(t): b for t, b in self.valid_bpc.items()},
            "untuned_temperature": self.untuned_temperature,
            "test_bpc_untuned": self.test_bpc_untuned,
            "test_bpc_tuned": self.test_bpc_tuned,
        }


@dataclass(frozen=True)
class EvalReport:
    """What `evaluate_run` measured, for one checkpoint on one corpus (eval.json's content)."""

    checkpoint: Path
    which: str  # best, last, or file
    step: int | None
    sha256: str  # the checkpoint's content digest: same weights and state, same value
    corpus_name: str
    corpus_path: Path
    corpus_splits: dict[str, str]  # split -> sha256 of its token file
    splits: dict[str, SplitReport]
    tuned: TunedTemperature | None = None
    time: str = ""

    def to_json(self) -> dict:
        out = {
            "checkpoint": str(self.checkpoint),
            "which": self.which,
            "step": self.step,
            "sha256": self.sha256,
            "corpus": {"name": self.corpus_name, "splits": dict(self.corpus_splits)},
            "splits": {name: split.to_json() for name, split in self.splits.items()},
        }
        if self.tuned is not None:
            out["tuned_temperature"] = self.tuned.to_json()
        out["time"] = self.time
        return out


def evaluate_run(
    run: Path,
    *,
    splits: Sequence[str] = ("test",),
    checkpoint: str | Path = "best",
    batch_size: int | None = None,
    data_dir: Path | None = None,
    device="cpu",
    dynamic: bool = False,
    dynamic_overrides: dict | None = None,
    tune_temperature: bool | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Evaluate a run folder's checkpoint (best, last or a .pt path), or a .pt file, on its corpus.

    The corpus is the one the checkpoint was trained on, found from any
    working directory (see `open_run_corpus`) and refused when it changed
    since. Each of `splits` is scored with the recipe's eval settings
    (`batch_size` overrides eval.batch_size); with `dynamic`, also under
    dynamic evaluation (`dynamic_overrides`: eval.dynamic fields, e.g.
    {"lr": 1e-4}); with `tune_temperature` (None: the recipe's
    eval.tune_temperature), the softmax temperature is searched on valid and
    test is scored with it too. Nothing is written: see `write_eval`.
    """
    from lstmlab.dynamic_eval import dynamic_settings

    splits = tuple(dict.fromkeys(splits))
    _check_arguments(splits, batch_size, dynamic, dynamic_overrides)
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    loaded = _load(run, checkpoint, dev)
    cfg = loaded.config
    dyn_cfg = dynamic_settings(cfg.eval.dynamic, dynamic_overrides) if dynamic else None
    corpus = open_run_corpus(loaded, data_dir)
    common = {
        "batch_size": batch_size or cfg.eval.batch_size,
        "bptt": cfg.eval.bptt,
        "char_lengths": loaded.tokenizer.char_lengths(),
        "device": dev,
        "progress": progress,
    }
    reports = _score_splits(loaded.model, cfg, corpus, splits, dyn_cfg, common)
    tuned = None
    if cfg.eval.tune_temperature if tune_temperature is None else tune_temperature:
        tuned = _tune_temperature(loaded.model, cfg, corpus, common)
    return EvalReport(
        checkpoint=loaded.path.resolve(),
        which=loaded.which,
        step=loaded.step,
        sha256=loaded.sha256,
        corpus_name=corpus.name,
        corpus_path=corpus.path.resolve(),
        corpus_splits={k: v.sha256 for k, v in corpus.meta.splits.items()},
        splits=reports,
        tuned=tuned,
        time=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def _check_arguments(splits, batch_size, dynamic: bool, dynamic_overrides) -> None:
    unknown = [s for s in splits if s not in SPLITS]
    if not splits or unknown:
        raise UsageError(
            f"cannot evaluate split(s) {', '.join(unknown) or '(none)'}",
            hint="use --split valid, test or all",
        )
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if not dynamic and any(v is not None for v in (dynamic_overrides or {}).values()):
        raise UsageError(
            "--dyn-lr, --dyn-decay, --segment-len and --ms-tokens apply to dynamic evaluation",
            hint="add --dynamic",
        )


def _score_splits(model, cfg, corpus, splits, dyn_cfg, common: dict) -> dict[str, SplitReport]:
    """Each split scored statically and, with `dyn_cfg`, under dynamic evaluation."""
    from lstmlab.dynamic_eval import dynamic_evaluate, gradient_rms

    rms = None
    if dyn_cfg is not None:  # gradient statistics from the train split, once for every split
        rms = gradient_rms(
            model,
            _split_tokens(corpus, "train"),
            batch_size=dyn_cfg.ms_batch_size,
            segment_len=dyn_cfg.segment_len,
            max_tokens=dyn_cfg.ms_tokens,
            device=common["device"],
            progress=common["progress"],
        )
    reports = {}
    for name in splits:
        tokens = _split_tokens(corpus, name)
        t0 = time.perf_counter()
        static = evaluate(
            model, tokens, temperature=cfg.eval.temperature, description=f"eval {name}", **common
        )
        seconds = time.perf_counter() - t0
        dyn = dyn_seconds = None
        if rms is not None:
            t0 = time.perf_counter()
            dyn = dynamic_evaluate(
                model,
                tokens,
                rms,
                dyn_cfg,
                char_lengths=common["char_lengths"],
                temperature=cfg.eval.temperature,
                device=common["device"],
                progress=common["progress"],
                description=f"dynamic eval {name}",
            )
            dyn_seconds = time.perf_counter() - t0
        reports[name] = SplitReport(
            result=static,
            seconds=seconds,
            dynamic=dyn,
            dynamic_seconds=dyn_seconds,
            dynamic_settings=dyn_cfg.model_dump() if dyn_cfg is not None else None,
        )
    return reports


def _tune_temperature(model, cfg, corpus, common: dict) -> TunedTemperature:
    """The grid temperature best on valid, and test scored at it and at the recipe's."""
    best, on_valid = _search_temperature(
        model, _split_tokens(corpus, "valid"), description="tune temperature on valid", **common
    )
    temps = tuple(dict.fromkeys((cfg.eval.temperature, best)))
    on_test = evaluate_temperatures(
        model, _split_tokens(corpus, "test"), temps, description="eval test", **common
    )
    return TunedTemperature(
        temperature=best,
        valid_bpc={t: r.bpc for t, r in on_valid.items()},
        untuned_temperature=cfg.eval.temperature,
        test_bpc_untuned=on_test[cfg.eval.temperature].bpc,
        test_bpc_tuned=on_test[best].bpc,
    )


def _load(run, checkpoint, device):
    """A run folder's or .pt file's checkpoint, or an export folder / hf://user/repo."""
    from lstmlab.checkpoint import load_for_inference
    from lstmlab.portable import is_export, load_export_for_inference, resolve_model_source

    source = resolve_model_source(str(run))
    if source.is_dir() and is_export(source):
        return load_export_for_inference(source, device)
    return load_for_inference(source, which=checkpoint, device=device)


def open_run_corpus(loaded, data_dir: Path | None = None):
    """The corpus a loaded checkpoint was trained on, checked to be unchanged since.

    Looked for in `data_dir` when given, else in the parent of the absolute
    corpus folder the checkpoint recorded (when it still exists), else in the
    recipe's data.data_dir, else in the default data dir; so a run folder
    evaluates from any working directory. Refused with a VocabularyError when
    its vocabulary differs, and with a CorpusError when a split's checksum
    differs from the one recorded at training (a corpus prepared again under
    the same name). Checkpoints without recorded checksums get the vocabulary
    check only.
    """
    from lstmlab.corpora.store import default_data_dir

    recorded = loaded.corpus
    name = recorded.get("name") if isinstance(recorded.get("name"), str) else None
    name = name or loaded.config.data.corpus
    if data_dir is not None:
        root = Path(data_dir)
    elif isinstance(recorded.get("path"), str) and Path(recorded["path"]).is_dir():
        root = Path(recorded["path"]).parent
    else:
        root = loaded.config.data.data_dir or default_data_dir()
    corpus = _open_corpus(root, name)
    if corpus.tokenizer.to_meta() != loaded.tokenizer.to_meta():
        raise VocabularyError(
            f"corpus {name!r} in {corpus.path.parent} has another vocabulary than {loaded.path} was trained on",
            hint=f"pass --data-dir DIR where DIR/{name}/ is the corpus the run was trained on",
        )
    check_corpus_identity(recorded.get("splits"), corpus, loaded.path)
    return corpus


def check_corpus_identity(recorded_splits, corpus, checkpoint: Path) -> None:
    """Refuse a corpus whose split checksums differ from those a checkpoint recorded.

    `recorded_splits` is the checkpoint's corpus["splits"] ({split: sha256});
    None (a checkpoint from before checksums were recorded) checks nothing.
    """
    if not isinstance(recorded_splits, dict):
        return
    present = {k: v.sha256 for k, v in corpus.meta.splits.items()}
    changed = [s for s, digest in recorded_splits.items() if present.get(s) != digest]
    if changed:
        raise CorpusError(
            f"corpus {corpus.name!r} in {corpus.path.parent} changed since {checkpoint} was trained "
            f"(split {', '.join(changed)} differs from the checksum recorded at training)",
            hint=f"pass --data-dir DIR where DIR/{corpus.name}/ is the original corpus, or prepare "
            f"it again from the same source with `lstmlab prepare`",
        )


def _open_corpus(root: Path, name: str):
    """open_corpus, with a hand-damaged meta.json (wrong types, a list) as a one-line CorpusError."""
    from lstmlab.corpora.store import open_corpus

    try:
        return open_corpus(root, name)
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise _damaged(Path(root) / name, exc) from None


def _split_tokens(corpus, split: str) -> np.ndarray:
    try:
        return corpus.tokens(split)
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise _damaged(corpus.path, exc) from None


def _damaged(folder: Path, exc: Exception) -> CorpusError:
    return CorpusError(
        f"{folder / 'meta.json'} is damaged ({exc.__class__.__name__}: {str(exc)[:80]})",
        hint=f"prepare the corpus again with `lstmlab prepare` (it writes {folder.name}/meta.json)",
    )


def write_eval(run_dir: Path, report: EvalReport) -> Path:
    """Write `report` to run_dir/eval.json (atomically) and return its path.

    eval.json holds the results of one checkpoint on one corpus: when it already
    holds the same checkpoint content (sha256) and corpus, the new splits are
    merged into it; anything else there (another checkpoint, an older format,
    a damaged or foreign file) is replaced, never mixed in.
    """
    out = Path(run_dir) / "eval.json"
    new = report.to_json()
    old = _read_json(out)
    same = (
        isinstance(old, dict)
        and old.get("sha256") == new["sha256"]
        and old.get("corpus") == new["corpus"]
        and isinstance(old.get("splits"), dict)
    )
    if same:
        new["splits"] = {**old["splits"], **new["splits"]}
        if "tuned_temperature" not in new and isinstance(old.get("tuned_temperature"), dict):
            new["tuned_temperature"] = old["tuned_temperature"]
    return atomic_write_text(out, json.dumps(new, indent=2) + "\n")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
