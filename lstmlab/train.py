"""The training loop: truncated BPTT over contiguous streams, with exact resume.

Each step reads the next (B, bptt) window of every stream, runs the model from
the state the previous window left (detached: gradients stop at the window
edge), and takes one optimizer step on the mean per-token loss (or, with
`train.loss: window_sum`, on its sum over the window averaged over streams, as
the Mogrifier/LAMB code does; logged losses stay per-token means). Everything a
step depends on — model, optimizer, scheduler, stream position, carried state
and every process's RNG state — is saved in the checkpoint, so k steps + resume
+ (N − k) steps equal N steps straight, bit for bit on CPU.

The file reads as litgpt's pretrain.py does: `start_run` builds or restores a
`Run`, `train_step` is one optimizer step with its precision and non-finite
handling, `validate` scores the validation split, `save` writes a checkpoint,
`stop_reason` is the pure budget decision, and `fit` strings them together.

Ctrl-C or SIGTERM asks the loop to stop after the current step (or validation
window); it saves `last.pt` and raises `TrainingInterrupted` (exit code 130 /
143). A second Ctrl-C stops at once; checkpoints are written atomically, so none
is torn. Time: `elapsed_s` counts training steps only (what `max_minutes`
budgets); `wall_s` is wall-clock time including validation and checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lstmlab import runs
from lstmlab.batching import Streams
from lstmlab.cells import detach_state, restart_streams
from lstmlab.checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from lstmlab.config import RunConfig, TrainConfig, validate
from lstmlab.corpora.store import Corpus, default_data_dir, open_corpus
from lstmlab.distributed import SINGLE, DistContext
from lstmlab.errors import (
    CheckpointError,
    ConfigError,
    LstmlabError,
    TrainingError,
    UsageError,
)
from lstmlab.evaluate import EvalResult, EvaluationStopped, evaluate, rows_for_rank
from lstmlab.finetune import init_from
from lstmlab.model import LanguageModel, LastLayer, build_model
from lstmlab.optim import apply_optimizer_settings, build_optimizer, lr_factor, total_steps
from lstmlab.progress import NullProgress, Progress
from lstmlab.resume import check_same_corpus, corpus_identity, resume_changes
from lstmlab.sizing import count, resolve
from lstmlab.trackers import TrackerSink, open_trackers, status_of


class TrainingInterrupted(TrainingError):
    """Stopped by a signal after saving `last.pt`; exit code 128 + signal number."""

    def __init__(self, message: str, hint: str, signum: int) -> None:
        super().__init__(message, hint)
        self.exit_code = 128 + signum


@dataclass
class TrainState:
    """Counters saved in every checkpoint (`elapsed_s`: step time only; `wall_s`: wall clock)."""

    step: int = 0
    tokens_seen: int = 0
    epoch: int = 0
    stream_pos: int = 0
    elapsed_s: float = 0.0
    wall_s: float = 0.0
    best_valid_bpc: float = math.inf
    best_step: int | None = None
    last_valid_step: int | None = None


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    stop_reason: str
    num_parameters: int
    final_valid: dict | None = None
    tokens_per_s: float = 0.0


# ---------------------------------------------------------------- schedule and optimizer (pure)


def stop_reason(train: TrainConfig, state: TrainState, steps_per_epoch: int) -> str | None:
    """The first budget `state` has reached, or None to go on."""
    if train.max_steps and state.step >= train.max_steps:
        return "max_steps"
    if train.max_tokens and state.tokens_seen >= train.max_tokens:
        return "max_tokens"
    if train.max_epochs and state.step >= train.max_epochs * steps_per_epoch:
        return "max_epochs"
    if train.max_minutes and state.elapsed_s >= train.max_minutes * 60:
        return "max_minutes"
    return None


def budget_fraction(train: TrainConfig, state: TrainState, steps_per_epoch: int) -> float:
    """How far `state` is through its budget: the largest ratio over the budgets set (1 = stop)."""
    ratios = [
        state.step / train.max_steps if train.max_steps else 0.0,
        state.tokens_seen / train.max_tokens if train.max_tokens else 0.0,
        state.step / (train.max_epochs * steps_per_epoch) if train.max_epochs else 0.0,
        state.elapsed_s / (train.max_minutes * 60) if train.max_minutes else 0.0,
    ]
    return min(1.0, max(ratios))


def clock(seconds: float | None) -> str:
    """h:mm:ss, or '?' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------- signals


class _StopRequest:
    """First SIGINT/SIGTERM: finish the step, save, exit. Second SIGINT: stop now."""

    def __init__(self, announce: Callable[[dict], None]) -> None:
        self.signum: int | None = None
        self.announce = announce

    def __call__(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        self.announce({"kind": "signal", "signal": signal.Signals(signum).name})


@contextmanager
def _catch_stop_signals(announce: Callable[[dict], None]):
    request = _StopRequest(announce)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# ---------------------------------------------------------------- state <-> plain data


def _state_to_plain(state) -> list:
    return [[t.detach().cpu() for t in layer_state] for layer_state in state]


def _state_from_plain(plain: list, template) -> list:
    return [type(t)(*(x.to(t[0].device) for x in p)) for p, t in zip(plain, template)]


def _rng_state() -> dict:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _rank_rng_state(device: torch.device) -> dict:
    """This process's generators: the CPU one and, on CUDA, its own device's."""
    out = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _set_rank_rng_state(rng: dict, device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)


# ---------------------------------------------------------------- precision, compile, DDP


def precision_context(precision: str, device: torch.device):
    """(autocast context factory, grad scaler or None) for train.precision."""
    if precision == "fp32":
        return contextlib.nullcontext, None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            "train.precision fp16 needs a CUDA device", hint="use bf16 (CPU or CUDA) or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            "train.precision bf16 is not supported by this GPU", hint="use fp16 or fp32"
        )
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def _float_state(state: list) -> list:
    """Recurrent state and stabilisers are carried in float32 whatever autocast computed."""
    return [type(s)(*(t.float() for t in s)) for s in state]


def check_compiler(train: TrainConfig, device: torch.device) -> None:
    """torch.compile's inductor backend builds C++ (CPU) or Triton (CUDA) code: refuse early without it."""
    if not train.compile:
        return
    names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    if device.type == "cpu" and not any(name and shutil.which(name) for name in names):
        raise ConfigError(
            "train.compile needs a C++ compiler for torch.compile on CPU, and none was found "
            "(g++, c++, clang++ or $CXX)",
            hint="install one (e.g. apt-get install g++) or train with --set train.compile=false",
        )


def _wrap(model: torch.nn.Module, tcfg: TrainConfig, dist: DistContext, device: torch.device):
    """The callable the training step runs: DDP and/or torch.compile around `model`.

    Checkpoints always come from `model` itself, so they never carry `module.` or
    `_orig_mod.` prefixes and load on any backend.
    """
    wrapped = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
    if tcfg.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


# ---------------------------------------------------------------- sizes and corpus


# Bytes per parameter while training with Adam in float32: weight, gradient, two moments.
_TRAIN_BYTES_PER_PARAMETER = 16
# Activations kept for the backward, per token, layer and hidden unit (float32 gates,
# cell state, outputs and their dropout masks): a generous multiple for every cell.
_ACTIVATION_FLOATS_PER_UNIT = 24


def _available_memory(device: torch.device) -> int | None:
    """Free bytes on `device` (CPU: MemAvailable), or None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return None


def check_fits(cfg: RunConfig, vocab_size: int, device: torch.device, batch_rows: int) -> int:
    """Count the parameters on the meta device (no memory) and refuse a run that cannot fit.

    Returns the parameter count. The estimate is coarse (weights, gradients and Adam
    moments, plus a generous bound on one window's activations); it only refuses
    sizes that are out of reach, before any allocation.
    """
    try:
        params = count(cfg.model, vocab_size)
    except (RuntimeError, ValueError):  # an init that reads values; meta ops raise RuntimeErrors
        return -1
    widths = sum(
        max(cfg.model.cell.hidden_dim, cfg.model.embed_dim) for _ in range(cfg.model.num_layers)
    )
    tokens = batch_rows * cfg.train.bptt
    need = (
        params * _TRAIN_BYTES_PER_PARAMETER
        + tokens * (widths * _ACTIVATION_FLOATS_PER_UNIT + vocab_size * 3) * 4
    )
    free = _available_memory(device)
    if free is not None and need > free:
        raise ConfigError(
            f"this model ({params:,} parameters) needs about {need / 2**30:,.1f} GiB to train "
            f"with batch {batch_rows} x bptt {cfg.train.bptt}, and {device} has "
            f"{free / 2**30:,.1f} GiB free",
            hint="lower model.cell.hidden_dim, model.num_layers, train.batch_size or train.bptt",
        )
    return params


def open_run_corpus(cfg: RunConfig, *, verify: bool = False) -> Corpus:
    """The recipe's prepared corpus; `verify` re-checks every split's sha256 first."""
    corpus = open_corpus(cfg.data.data_dir or default_data_dir(), cfg.data.corpus)
    if verify:
        corpus.verify()
    kind = corpus.meta.tokenizer.get("kind")
    if cfg.data.tokenizer and cfg.data.tokenizer != kind:
        raise ConfigError(
            f"data.tokenizer is {cfg.data.tokenizer!r} but corpus {cfg.data.corpus!r} was prepared with {kind!r}",
            hint="prepare the corpus with that tokenizer or drop data.tokenizer from the recipe",
        )
    return corpus


def with_absolute_data_dir(cfg: RunConfig) -> RunConfig:
    """The recipe with data.data_dir (and a local init_from) resolved, so the run folder
    works from any directory."""
    data = cfg.to_dict()
    data["data"]["data_dir"] = str(Path(cfg.data.data_dir or default_data_dir()).resolve())
    source = cfg.train.init_from
    if source and not source.startswith("hf:") and Path(source).exists():
        data["train"]["init_from"] = str(Path(source).resolve())  # so is the weights' source
    return cfg if data == cfg.to_dict() else validate(data)


# ---------------------------------------------------------------- resume rules


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    """Everything a training step, a validation and a checkpoint need."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    dist: DistContext
    corpus: Corpus
    model: LanguageModel
    step_model: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    autocast: Callable
    streams: Streams
    rows: slice  # this process's block of the global batch's streams
    steps_per_epoch: int
    budget_steps: int | None
    char_len: torch.Tensor  # characters per token id, for bpc
    progress: TrainState
    state: list  # the recurrent state of this process's streams
    init: dict | None = None  # what train.init_from loaded (a fresh start from trained weights)

    @property
    def local_batch(self) -> int:
        return self.rows.stop - self.rows.start


def _emit(run: Run, record: dict, on_event: Callable[[dict], None] | None) -> None:
    """Rank 0 appends a record to metrics.jsonl and passes it on."""
    if not run.dist.is_main:
        return
    runs.append_metrics(run.run_dir, record)
    if on_event:
        on_event(record)


def start_run(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool,
    device: torch.device,
    dist: DistContext,
    corpus: Corpus,
) -> tuple[Run, list[str]]:
    """Build model, optimizer and streams; with `resume`, restore them from last.pt.

    Returns the run and the recipe fields that differ from the resumed checkpoint's.
    """
    tcfg = cfg.train
    streams = Streams(corpus.tokens("train"), tcfg.batch_size)
    steps_per_epoch = math.ceil(streams.length / tcfg.bptt)
    budget = total_steps(tcfg, streams.length)
    sched = tcfg.schedule
    if sched.name in ("cosine", "linear") and budget is None and not sched.decay_steps:
        raise ConfigError(
            f"train.schedule {sched.name} needs a step budget (max_steps, max_tokens or "
            "max_epochs) or schedule.decay_steps, not only max_minutes"
        )
    payload, changes = None, []
    if resume:
        payload = load_checkpoint(runs.checkpoint_path(run_dir, "last"))
        changes = resume_changes(cfg, payload["config"], run_dir)
        check_same_corpus(payload, corpus, run_dir)
    rows = dist.rows(tcfg.batch_size)
    check_fits(cfg, corpus.vocab_size, device, rows.stop - rows.start)
    check_compiler(tcfg, device)
    autocast, scaler = precision_context(tcfg.precision, device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, corpus.vocab_size).to(device)
    if dist.enabled:  # different dropout masks per rank; DDP broadcasts rank 0's weights
        torch.manual_seed(cfg.seed + 7919 * dist.rank)
    # A resumed optimizer is rebuilt as it was saved, then given the recipe's settings.
    stored_train = tcfg
    if payload is not None:
        stored_train = validate(payload["config"], where=f"{run_dir} (checkpoint's recipe)").train
    optimizer = build_optimizer(model, stored_train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tcfg.schedule, budget, steps_per_epoch)
    )
    run = Run(
        cfg=cfg,
        run_dir=Path(run_dir),
        device=device,
        dist=dist,
        corpus=corpus,
        model=model,
        step_model=_wrap(model, tcfg, dist, device),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        autocast=autocast,
        streams=streams,
        rows=rows,
        steps_per_epoch=steps_per_epoch,
        budget_steps=budget,
        char_len=torch.as_tensor(corpus.tokenizer.char_lengths(), dtype=torch.float64),
        progress=TrainState(),
        state=model.initial_state(rows.stop - rows.start, device=device),
    )
    if payload is not None:
        _restore(run, payload)
    elif cfg.train.init_from:  # fine-tuning: trained weights, a fresh optimizer and counters
        run.init = init_from(model, cfg, corpus.tokenizer)
    return run, changes


def _restore(run: Run, payload: dict) -> None:
    """Load weights, optimizer, scheduler, counters, carried state and RNG from a checkpoint."""
    cfg, dist = run.cfg, run.dist
    run.model.load_state_dict(payload["model"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    if run.scaler is not None and "scaler" in payload:
        run.scaler.load_state_dict(payload["scaler"])
    run.progress = TrainState(**payload["train_state"])
    step = run.progress.step
    factor = lr_factor(step, cfg.train.schedule, run.budget_steps, run.steps_per_epoch)
    apply_optimizer_settings(run.optimizer, run.scheduler, cfg.train, factor)
    saved_batch = payload["hidden"][0][0].shape[0]
    if saved_batch != cfg.train.batch_size:
        raise ConfigError(
            f"train.batch_size is {cfg.train.batch_size} but {run.run_dir} was trained with {saved_batch} streams",
            hint="resume with the run's batch size (the number of processes may change)",
        )
    rows = run.rows
    run.state = _state_from_plain(
        [[t[rows] for t in layer] for layer in payload["hidden"]], run.state
    )
    ranks = payload.get("rng_ranks")
    if ranks is not None and len(ranks) == dist.world_size:
        _set_rank_rng_state(ranks[dist.rank], run.device)  # bit-exact on the same world size
    elif not dist.enabled:
        _set_rng_state(payload["rng"])
    else:  # another number of processes: fresh, distinct masks per rank
        torch.manual_seed(cfg.seed + 7919 * dist.rank + step)


def save(run: Run, which: str) -> None:
    """Write `which`.pt (collective under DDP: every rank's state rows and RNG are gathered)."""
    full_state = [[run.dist.gather_rows(t) for t in layer] for layer in run.state]
    rng_ranks = run.dist.gather_object(_rank_rng_state(run.device))
    if not run.dist.is_main:
        return
    path = runs.checkpoint_path(run.run_dir, which)
    payload = {
        "config": run.cfg.to_dict(),
        "tokenizer": run.corpus.tokenizer.to_meta(),
        "corpus": corpus_identity(run.corpus),
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "train_state": asdict(run.progress),
        "hidden": _state_to_plain(full_state),
        "rng": _rng_state(),
        "rng_ranks": [{k: v.cpu() for k, v in r.items()} for r in rng_ranks],
        "num_parameters": run.model.num_parameters(),
    }
    if run.scaler is not None:
        payload["scaler"] = run.scaler.state_dict()
    try:
        save_checkpoint(path, payload)
    except OSError as exc:
        raise CheckpointError(
            f"could not write {path} at step {run.progress.step} ({exc.strerror or exc}); the previous {which}.pt is intact",
            hint=f"free disk space, then `lstmlab train --resume {run.run_dir}`",
        ) from None


# ---------------------------------------------------------------- one step


@dataclass
class StepOutcome:
    """What one optimizer step did: `applied`, `overflow` (fp16 scaler skipped it) or `skipped`."""

    status: str
    loss: torch.Tensor  # this process's mean per-token loss (nats), detached
    lr: float  # the learning rate the step used
    reason: str | None = None  # why a step was skipped
    penalty: torch.Tensor | None = None  # AR + TAR added to the objective, detached; None: off


def activation_penalty(last: LastLayer, ar_alpha: float, tar_beta: float) -> torch.Tensor:
    """AWD-LSTM's AR + TAR (Merity et al. 2017, arXiv:1708.02182, section 4.6), in float32.

    AR is alpha x mean of the squared last-layer output after its dropout; TAR is
    beta x mean of the squared change between consecutive outputs before dropout,
    within the window (no difference across its edge; a 1-step window has none).
    Means run over streams, steps and units, as AWD's `.pow(2).mean()` does.
    """
    raw, dropped = last.raw.float(), last.dropped.float()  # (B, T, H)
    penalty = ar_alpha * dropped.pow(2).mean()
    if tar_beta and raw.shape[1] > 1:
        penalty = penalty + tar_beta * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    return penalty


def next_window(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's rows of the next (B, bptt) window; an epoch boundary restarts streams and state."""
    progress = run.progress
    if progress.stream_pos >= run.streams.length:
        progress.epoch += 1
        progress.stream_pos = 0
        run.state = run.model.initial_state(run.local_batch, device=run.device)
    x, y = run.streams.window(progress.stream_pos, run.cfg.train.bptt)
    x = x[run.rows].to(run.device, non_blocking=True)
    y = y[run.rows].to(run.device, non_blocking=True)
    return x, y


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> StepOutcome:
    """Forward, backward and update on one window, with the precision's non-finite handling.

    A non-finite loss or gradient stops training (`on_nonfinite: stop`, before anything
    is saved from this step) or skips the update and restarts the carried state
    (`skip`); an fp16 overflow lets the grad scaler skip the step and lower its scale.
    Every DDP rank takes the same branch, or the gradient all-reduce would hang.
    """
    tcfg, optimizer, scaler = run.cfg.train, run.optimizer, run.scaler
    lr = optimizer.param_groups[0]["lr"]
    state = detach_state(run.state)
    if tcfg.drop_state:  # LAMB: some streams start this window from the initial state
        keep = (torch.rand(run.local_batch) >= tcfg.drop_state).to(run.device)
        initial = run.model.initial_state(run.local_batch, device=run.device)
        state = restart_streams(state, initial, keep)
    penalty = None
    with run.autocast():
        if tcfg.ar_alpha or tcfg.tar_beta:
            logits, new_state, last = run.step_model(x, state, return_last=True)
            penalty = activation_penalty(last, tcfg.ar_alpha, tcfg.tar_beta)
        else:
            logits, new_state = run.step_model(x, state)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        total = loss if penalty is None else loss + penalty  # `loss` stays pure cross-entropy
        # LAMB's loss sums over the window: the same gradient direction, T times larger
        objective = total * y.shape[1] if tcfg.loss == "window_sum" else total
    optimizer.zero_grad(set_to_none=True)
    grad_norm = None
    (loss_bad,) = run.dist.any([not bool(torch.isfinite(total))], run.device)
    if not loss_bad:
        (scaler.scale(objective) if scaler else objective).backward()
        if scaler:
            scaler.unscale_(optimizer)
        # the norm is computed either way: a finite loss can still give inf/NaN gradients
        grad_norm = torch.nn.utils.clip_grad_norm_(
            run.model.parameters(), tcfg.grad_clip or math.inf
        )
    finite = grad_norm is not None and bool(torch.isfinite(grad_norm))
    status, reason = "applied", None
    if scaler is not None and grad_norm is not None and not finite:
        scaler.step(optimizer)  # fp16 overflow: the scaler skips the step and lowers its scale
        scaler.update()
        status = "overflow"
    elif not finite:
        reason = "gradients became non-finite"
        if grad_norm is None:
            reason = f"loss became {float(loss.detach())}"
            if penalty is not None and bool(torch.isfinite(loss)):
                reason = f"the activation penalty (ar_alpha, tar_beta) became {float(penalty)}"
        if tcfg.on_nonfinite == "stop":
            raise TrainingError(
                f"{reason} at step {run.progress.step + 1}; nothing was saved from this step",
                hint=f"last.pt holds step {run.progress.step}; lower train.optimizer.lr or set "
                "train.grad_clip, or set train.on_nonfinite=skip",
            )
        optimizer.zero_grad(set_to_none=True)
        status = "skipped"
    elif scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    run.scheduler.step()
    if status == "skipped":
        run.state = run.model.initial_state(run.local_batch, device=run.device)
    else:
        run.state = _float_state(new_state)
    return StepOutcome(
        status, loss.detach(), lr, reason, None if penalty is None else penalty.detach()
    )


def train_record(run: Run, outcome: StepOutcome, y: torch.Tensor, tokens_per_s: float) -> dict:
    """The global batch's loss and bpc (summed over DDP ranks, equal to one process's)."""
    p = run.progress
    local = [
        float(outcome.loss) * y.numel(),
        float(y.numel()),
        float(run.char_len[y.cpu()].sum()),
    ]
    if outcome.penalty is not None:
        local.append(float(outcome.penalty) * y.numel())
    nats, tokens, chars, *penalty = run.dist.sum(local, run.device)
    extra = {"penalty": penalty[0] / max(tokens, 1.0)} if penalty else {}
    return {
        "kind": "train",
        "step": p.step,
        "tokens": p.tokens_seen,
        "epoch": p.epoch,
        "loss": nats / max(tokens, 1.0),
        "bpc": nats / (math.log(2) * max(chars, 1.0)),
        "lr": outcome.lr,
        "tokens_per_s": tokens_per_s,
        "elapsed_s": round(p.elapsed_s, 3),
        "wall_s": round(p.wall_s, 3),
        **extra,
    }


# ---------------------------------------------------------------- validation


def validate_run(run: Run, should_stop: Callable[[], bool] | None = None) -> tuple[dict, bool]:
    """Score the validation split (all ranks together give the 1-process figure).

    Returns the `valid` record and whether it is a new best.
    """
    cfg = run.cfg
    tokens = run.corpus.tokens("valid")
    if cfg.train.eval_tokens:
        tokens = tokens[: cfg.train.eval_tokens + 1]
    result = evaluate(
        run.model,
        tokens,
        batch_size=cfg.eval.batch_size,
        bptt=cfg.eval.bptt,
        char_lengths=run.corpus.tokenizer.char_lengths(),
        device=run.device,
        rows=rows_for_rank(len(tokens), cfg.eval.batch_size, run.dist.rank, run.dist.world_size)
        if run.dist.enabled
        else None,
        should_stop=should_stop,
    )
    nats, count, chars = run.dist.sum([result.nats, result.tokens, result.chars], run.device)
    result = EvalResult(nats, int(count), int(chars))
    p = run.progress
    p.last_valid_step = p.step
    best = math.isfinite(result.bpc) and result.bpc < p.best_valid_bpc
    if best:
        p.best_valid_bpc, p.best_step = result.bpc, p.step
    record = {
        "kind": "valid",
        "step": p.step,
        "tokens": p.tokens_seen,
        "elapsed_s": round(p.elapsed_s, 3),
        "wall_s": round(p.wall_s, 3),
        "loss": result.loss,
        "bpc": result.bpc,
        "perplexity": result.perplexity,
        "valid_tokens": result.tokens,
    }
    return record, best


# ---------------------------------------------------------------- fit


def fit(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    force: bool = False,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    on_event: Callable[[dict], None] | None = None,
    dist: DistContext = SINGLE,
    stop_early: Callable[[dict], str | None] | None = None,
) -> TrainResult:
    """Train `cfg` into `run_dir`; with `resume`, continue from its last.pt.

    The run folder is claimed first (`runs.claim_run_dir`: one writer, never a folder
    that is not an lstmlab run); a start that fails before its first checkpoint
    leaves no folder behind. `on_event` receives every metrics record, plus
    `warning` and `signal` notices that are not written to metrics.jsonl.
    Under torchrun, pass the `DistContext`: every rank runs this function on its
    block of streams, and only rank 0 writes metrics, progress and checkpoints.
    `stop_early` sees each periodic validation's record (on rank 0; not the final
    one a budget ends with); a reason it returns ends the run there as a budget
    would: last.pt saved, an `end` record with that reason (`lstmlab tune` prunes
    trials so). The recipe's `tune` block is
    not a setting of the run: it is dropped, and the run folder never records it.
    """
    device = torch.device(device)
    cfg = with_absolute_data_dir(cfg.without_tune())
    corpus = open_run_corpus(cfg, verify=True)
    if not (resume and cfg.model.sized):  # a resumed config.yaml keeps its recorded width
        cfg = cfg.model_copy(update={"model": resolve(cfg.model, corpus.vocab_size)})
    trackers = None
    if cfg.train.loggers and dist.is_main:  # a missing extra fails here, before any claim
        trackers = open_trackers(cfg.train.loggers, Path(run_dir), cfg.to_dict(), resume=resume)
        on_event = _fan_out(on_event, trackers)
    lock = _claim(Path(run_dir), resume=resume, force=force, cfg=cfg, dist=dist)
    run, first_step = None, 0
    try:
        if lock is not None and on_event is not None:
            for warning in lock.warnings:
                on_event({"kind": "warning", "message": warning})
        run, changes = start_run(
            cfg, Path(run_dir), resume=resume, device=device, dist=dist, corpus=corpus
        )
        first_step = run.progress.step
        result = _loop(run, changes, progress, on_event, stop_early)
    except BaseException as exc:
        if trackers is not None:
            trackers.close(status_of(exc))
        stepped = run is not None and run.progress.step > first_step
        # a resumed run whose training fails failed, even before its first new step (a
        # refused setting, e.g. a budget already reached, leaves it as it was)
        refused = isinstance(exc, (ConfigError, UsageError))
        trained = stepped or (resume and run is not None and not refused)
        interrupted = isinstance(exc, (KeyboardInterrupt, TrainingInterrupted))
        if lock is not None and trained and not interrupted:
            lock.mark_failed(f"{type(exc).__name__}: {exc}")  # compare shows the run failed
        elif lock is not None:
            lock.abandon()  # releases; undoes a fresh start that saved nothing
        raise
    if lock is not None:
        lock.release()
    return result


def _fan_out(on_event: Callable[[dict], None] | None, trackers: TrackerSink):
    """One event hook feeding the trackers, then the caller's."""

    def both(record: dict) -> None:
        trackers(record)
        if on_event is not None:
            on_event(record)

    return both


def _claim(run_dir: Path, *, resume: bool, force: bool, cfg: RunConfig, dist: DistContext):
    """Rank 0 takes the run folder's lock; every rank learns whether that worked."""
    lock, error = None, None
    if dist.is_main:
        try:
            lock = runs.claim_run_dir(
                run_dir, force=force, resume=resume, data_root=Path(cfg.data.data_dir)
            )
        except LstmlabError as exc:
            error = exc
    problem = dist.broadcast(
        None if error is None else (error.message, error.hint, error.exit_code)
    )
    if error is not None:
        raise error
    if problem is not None:  # the other ranks stop with rank 0's reason
        other = LstmlabError(problem[0], problem[1])
        other.exit_code = problem[2]
        raise other
    return lock


def _begin(run: Run, changes: list[str], emit, announce) -> None:
    """Refuse a run with nothing left to do; record the resume and the resolved recipe."""
    p, tcfg = run.progress, run.cfg.train
    reason = stop_reason(tcfg, p, run.steps_per_epoch)
    if reason is not None:  # nothing to do, and nothing is written
        raise UsageError(
            f"{run.run_dir} already reached its budget ({reason}) at step {p.step}",
            hint="raise it to continue, e.g. --set train.max_steps=N "
            "(or max_tokens, max_epochs, max_minutes)",
        )
    if run.dist.is_main:
        remove_stale_temporaries(runs.checkpoint_path(run.run_dir, "last").parent)
        if p.step:
            runs.truncate_metrics(run.run_dir, p.step)
            emit({"kind": "resume", "step": p.step, "changed": changes})
        if run.init is not None:
            emit({"kind": "init", "step": 0, **run.init})
        runs.write_config(run.run_dir, run.cfg.to_dict())
    model = run.cfg.model
    if model.params is not None and not p.step:
        announce(
            {
                "kind": "sized",
                "params": model.params,
                "cell": model.cell.kind,
                "hidden_dim": model.cell.hidden_dim,
                "vocab_size": run.corpus.vocab_size,
                "num_parameters": run.model.num_parameters(),
            }
        )
    if run.streams.length < tcfg.bptt:
        announce(
            {
                "kind": "warning",
                "message": f"the train split gives each of the {tcfg.batch_size} streams only "
                f"{run.streams.length} tokens, fewer than train.bptt {tcfg.bptt}: every window "
                f"is {run.streams.length} tokens long",
            }
        )


def _loop(
    run: Run, changes: list[str], progress: Progress | None, on_event, stop_early=None
) -> TrainResult:
    """The training loop proper, from a started run to its end record."""
    tcfg, dist, p = run.cfg.train, run.dist, run.progress
    bar_progress = (progress or NullProgress()) if dist.is_main else NullProgress()

    def emit(record: dict) -> None:  # persisted: metrics.jsonl, then the caller
        _emit(run, record, on_event)

    def announce(record: dict) -> None:  # not persisted: warnings and signal notices
        if dist.is_main and on_event is not None:
            on_event(record)

    _begin(run, changes, emit, announce)
    final_valid, reason, meter = None, None, _Meter(run)
    run.model.train()
    with (
        _catch_stop_signals(announce) as stop,
        bar_progress.task("train", total=run.budget_steps) as bar,
    ):
        bar.advance(p.step)
        while reason is None:
            # read the next window and take one optimizer step on it
            t0 = time.perf_counter()
            x, y = next_window(run)
            outcome = train_step(run, x, y)
            if outcome.status == "skipped":
                emit({"kind": "skip", "step": p.step + 1, "reason": outcome.reason})
            # count what the step consumed (tokens of every rank) and the time it took
            meter.count(run, x, y, time.perf_counter() - t0)
            # log the global batch's figures
            bar.advance(1)
            if p.step % tcfg.log_every == 0:
                record = train_record(run, outcome, y, meter.rate())
                emit(record)
                bar.update(info=_progress_line(record, meter.eta(run)))
            # stop at a budget; ranks agree (time budgets and signals may differ between them)
            reason = _agreed_stop(run, stop)
            # validate and checkpoint on their cadence
            if reason is None and p.step % tcfg.eval_every == 0:
                final_valid = _validate_and_save(run, stop, emit)
                reason = _stopped_early(run, stop_early, final_valid)
            elif reason is None and tcfg.checkpoint_every and p.step % tcfg.checkpoint_every == 0:
                save(run, "last")
            meter.tick(run)
            # a signal: save and leave
            if stop.signum is not None and reason is None:
                _interrupt(run, stop.signum)
    # the end: a last validation when the budget fell between validations, then last.pt
    if p.last_valid_step != p.step:
        final_valid = _validate_and_save(run, None, emit, save_last=False)
    meter.tick(run)
    save(run, "last")
    emit(
        {
            "kind": "end",
            **_position(p),
            "reason": reason,
            "best_valid_bpc": p.best_valid_bpc,
            "best_step": p.best_step,
        }
    )
    return TrainResult(
        run_dir=run.run_dir,
        state=p,
        stop_reason=reason,
        num_parameters=run.model.num_parameters(),
        final_valid=final_valid,
        tokens_per_s=p.tokens_seen / max(p.elapsed_s, 1e-9),
    )


def _progress_line(record: dict, eta: float | None) -> str:
    return (
        f"loss {record['loss']:.3f}  bpc {record['bpc']:.3f}  {record['tokens_per_s']:,.0f} tok/s  "
        f"lr {record['lr']:.2e}  elapsed {clock(record['wall_s'])}  ETA {clock(eta)}"
    )


class _Meter:
    """Step time and tokens since the last log line; wall time since the last tick; the ETA."""

    def __init__(self, run: Run) -> None:
        self.tokens, self.seconds = 0, 0.0
        self.mark = time.perf_counter()
        self.start_wall = run.progress.wall_s
        self.start_fraction = budget_fraction(run.cfg.train, run.progress, run.steps_per_epoch)

    def eta(self, run: Run) -> float | None:
        """Wall seconds to the budget, extrapolated from this session's pace."""
        done = budget_fraction(run.cfg.train, run.progress, run.steps_per_epoch)
        if done <= self.start_fraction:
            return None
        pace = (run.progress.wall_s - self.start_wall) / (done - self.start_fraction)
        return pace * (1.0 - done)

    def count(self, run: Run, x: torch.Tensor, y: torch.Tensor, seconds: float) -> None:
        p, n = run.progress, y.numel() * run.dist.world_size
        p.step, p.tokens_seen, p.stream_pos = (
            p.step + 1,
            p.tokens_seen + n,
            p.stream_pos + x.shape[1],
        )
        p.elapsed_s += seconds
        self.tokens, self.seconds = self.tokens + n, self.seconds + seconds
        self.tick(run)

    def rate(self) -> float:
        """Tokens per second of step time since the last call; starts a new window."""
        rate = self.tokens / max(self.seconds, 1e-9)
        self.tokens, self.seconds = 0, 0.0
        return rate

    def tick(self, run: Run) -> None:
        now = time.perf_counter()
        run.progress.wall_s += now - self.mark
        self.mark = now


def _agreed_stop(run: Run, stop: _StopRequest) -> str | None:
    """The budget reached, if any, agreed over DDP ranks (with any rank's signal)."""
    reason = stop_reason(run.cfg.train, run.progress, run.steps_per_epoch)
    if run.dist.enabled:
        over, signalled = run.dist.any([reason is not None, stop.signum is not None], run.device)
        reason = reason or ("max_minutes" if over else None)
        if signalled and stop.signum is None:
            stop.signum = signal.SIGTERM
    return reason


def _stopped_early(run: Run, stop_early, record: dict) -> str | None:
    """The caller's reason to end after this validation (rank 0 decides; every rank follows)."""
    reason = stop_early(record) if stop_early is not None and run.dist.is_main else None
    if run.dist.enabled:
        reason = run.dist.broadcast(reason)
    return reason


def _validate_and_save(run: Run, stop, emit, *, save_last: bool = True) -> dict:
    """Validate (best.pt on improvement), then save last.pt; a signal mid-validation saves and leaves."""
    # Under DDP every rank must score the same windows, so validation is never cut short there.
    should_stop = None
    if stop is not None and not run.dist.enabled:
        should_stop = lambda: stop.signum is not None  # noqa: E731
    try:
        record, best = validate_run(run, should_stop)
    except EvaluationStopped:
        _interrupt(run, stop.signum)
    if best:
        save(run, "best")
    emit(record)
    if save_last:
        save(run, "last")
    return record


def _position(p: TrainState) -> dict:
    """Where a run is: the step, tokens and times an `end` or `stop` record carries."""
    return {
        "step": p.step,
        "tokens": p.tokens_seen,
        "elapsed_s": round(p.elapsed_s, 3),
        "wall_s": round(p.wall_s, 3),
    }


def _interrupt(run: Run, signum: int) -> None:
    """Save last.pt, record where the run stopped (a `stop` record, as `end` records where
    a run ended: `compare` reads its tokens and time), and leave."""
    save(run, "last")
    name = "SIGINT" if signum == signal.SIGINT else signal.Signals(signum).name
    if run.dist.is_main:
        runs.append_metrics(
            run.run_dir, {"kind": "stop", **_position(run.progress), "signal": name}
        )
    raise TrainingInterrupted(
        f"training stopped by {name} at step {run.progress.step}; last.pt saved",
        hint=f"continue with `lstmlab train --resume {run.run_dir}`",
        signum=signum,
    )


__all__ = [
    "Run",
    "StepOutcome",
    "TrainResult",
    "TrainState",
    "TrainingInterrupted",
    "fit",
    "save",
    "start_run",
    "stop_reason",
    "train_step",
    "validate_run",
]
