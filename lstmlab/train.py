"""The training loop: truncated BPTT over contiguous streams, with exact resume.

Each step reads the next (B, bptt) window of every stream, runs the model from
the state the previous window left (detached: gradients stop at the window
edge), and takes one optimizer step on the mean per-token loss (or, with
`train.loss: window_sum`, on its sum over the window averaged over streams, as
the Mogrifier/LAMB code does; logged losses stay per-token means). Everything a
step depends on — model, optimizer, scheduler, stream position, carried state
and RNG state — is saved in the checkpoint, so k steps + resume + (N − k)
steps equal N steps straight, bit for bit on CPU.

Ctrl-C or SIGTERM asks the loop to stop after the current step; it saves
`last.pt` and raises `TrainingInterrupted` (exit code 130 / 143). A second
Ctrl-C stops at once; checkpoints are written atomically, so none is torn.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lstmlab import runs
from lstmlab.batching import Streams
from lstmlab.cells import detach_state
from lstmlab.checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from lstmlab.config import RunConfig, ScheduleConfig, TrainConfig
from lstmlab.corpora.store import Corpus, default_data_dir, open_corpus
from lstmlab.distributed import SINGLE, DistContext
from lstmlab.errors import CheckpointError, ConfigError, TrainingError, VocabularyError
from lstmlab.evaluate import EvalResult, evaluate
from lstmlab.model import build_model
from lstmlab.progress import NullProgress, Progress


class TrainingInterrupted(TrainingError):
    """Stopped by a signal after saving `last.pt`; exit code 128 + signal number."""

    def __init__(self, message: str, hint: str, signum: int) -> None:
        super().__init__(message, hint)
        self.exit_code = 128 + signum


@dataclass
class TrainState:
    step: int = 0
    tokens_seen: int = 0
    epoch: int = 0
    stream_pos: int = 0
    elapsed_s: float = 0.0
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
    history: list = field(default_factory=list)


# ---------------------------------------------------------------- schedule (pure)


def total_steps(train: TrainConfig, steps_per_epoch: int) -> int | None:
    """The step budget implied by max_steps / max_tokens / max_epochs (None: time budget only)."""
    candidates = []
    if train.max_steps:
        candidates.append(train.max_steps)
    if train.max_tokens:
        candidates.append(math.ceil(train.max_tokens / (train.batch_size * train.bptt)))
    if train.max_epochs:
        candidates.append(math.ceil(train.max_epochs * steps_per_epoch))
    return min(candidates) if candidates else None


def lr_factor(
    step: int, schedule: ScheduleConfig, total: int | None, steps_per_epoch: int
) -> float:
    """Multiplier of the base learning rate for the step about to be taken (0-based)."""
    if schedule.warmup_steps and step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.name in ("cosine", "linear"):
        span = max(1, (schedule.decay_steps or total or 1) - schedule.warmup_steps)
        progress = min(1.0, (step - schedule.warmup_steps) / span)
        if schedule.name == "cosine":
            shape = 0.5 * (1 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * shape
    if schedule.name == "step":
        passed = sum(step >= m * steps_per_epoch for m in schedule.milestones_epochs)
        return schedule.factor**passed
    return 1.0


def decay_groups(model: torch.nn.Module, weight_decay: float, which: str) -> list[dict]:
    """Parameter groups: with "matrices", only weight matrices and conv kernels are decayed."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if which == "all" or weight_decay == 0.0:
        return [{"params": trainable, "weight_decay": weight_decay}]
    embedding = getattr(model, "embedding", None)
    spared = {id(embedding.weight)} if embedding is not None else set()
    decay = [p for p in trainable if p.ndim >= 2 and id(p) not in spared]
    keep = [p for p in trainable if not (p.ndim >= 2 and id(p) not in spared)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    opt = train.optimizer
    params = decay_groups(model, opt.weight_decay, opt.decay)
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    return cls(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)


# ---------------------------------------------------------------- signals


class _StopRequest:
    """First SIGINT/SIGTERM: finish the step, save, exit. Second SIGINT: stop now."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum


@contextmanager
def _catch_stop_signals():
    request = _StopRequest()
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


def _state_to_plain(hidden) -> list:
    return [[t.detach().cpu() for t in layer_state] for layer_state in hidden]


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


def _rank_slice(tokens, dist: DistContext):
    """Rank r's contiguous share of a split; shares overlap by one token so every pair is scored once."""
    if not dist.enabled:
        return tokens
    n = len(tokens) - 1
    start, stop = n * dist.rank // dist.world_size, n * (dist.rank + 1) // dist.world_size
    return tokens[start : stop + 1]


# ---------------------------------------------------------------- the loop


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


def check_architecture(cfg: RunConfig, stored: dict, where: Path) -> None:
    """A resumed run keeps its network: any difference in `model` is an error naming the fields."""
    new = cfg.to_dict()["model"]
    old = stored["model"]
    diffs = sorted(_diff_keys(old, new, "model"))
    if diffs:
        raise ConfigError(
            f"the recipe's model differs from the checkpoint being resumed ({where}) at: {', '.join(diffs)}",
            hint="drop those overrides, or start a new run instead of --resume",
        )


def _diff_keys(a, b, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(key), b.get(key), f"{prefix}.{key}")
        return out
    return [] if a == b else [prefix]


def fit(
    cfg: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    on_event: Callable[[dict], None] | None = None,
    dist: DistContext = SINGLE,
) -> TrainResult:
    """Train `cfg` into `run_dir` (which must exist); with `resume`, continue from its last.pt.

    Under torchrun, pass the `DistContext`: every rank runs this function on its
    block of streams, and only rank 0 writes metrics, progress and checkpoints.
    """
    device = torch.device(device)
    progress = (progress or NullProgress()) if dist.is_main else NullProgress()
    run_dir = Path(run_dir)
    corpus = open_run_corpus(cfg, verify=True)
    if dist.is_main:
        remove_stale_temporaries(runs.checkpoint_path(run_dir, "last").parent)
    train_tokens, valid_tokens = corpus.tokens("train"), corpus.tokens("valid")
    tcfg = cfg.train
    streams = Streams(train_tokens, tcfg.batch_size)
    steps_per_epoch = math.ceil(streams.length / tcfg.bptt)
    budget_steps = total_steps(tcfg, steps_per_epoch)
    sched = tcfg.schedule
    if sched.name in ("cosine", "linear") and budget_steps is None and not sched.decay_steps:
        raise ConfigError(
            f"train.schedule {sched.name} needs a step budget (max_steps, max_tokens or "
            "max_epochs) or schedule.decay_steps, not only max_minutes"
        )
    char_len = torch.as_tensor(corpus.tokenizer.char_lengths(), dtype=torch.float64)
    rows = dist.rows(tcfg.batch_size)  # this process's block of streams
    local_batch = rows.stop - rows.start
    autocast, scaler = precision_context(tcfg.precision, device)

    payload = None
    if resume:
        payload = load_checkpoint(runs.checkpoint_path(run_dir, "last"))
        check_architecture(cfg, payload["config"], run_dir)
        if payload["tokenizer"] != corpus.tokenizer.to_meta():
            raise VocabularyError(
                f"corpus {corpus.name!r} has another vocabulary than the run {run_dir} was trained on",
                hint="resume with the corpus the run was started on (data.corpus / data.data_dir)",
            )
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, corpus.vocab_size).to(device)
    if dist.enabled:  # different dropout masks per rank; DDP broadcasts rank 0's weights
        torch.manual_seed(cfg.seed + 7919 * dist.rank)
    step_model = _wrap(model, tcfg, dist, device)
    optimizer = build_optimizer(model, tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tcfg.schedule, budget_steps, steps_per_epoch)
    )
    state = TrainState()
    hidden = model.initial_state(local_batch, device=device)
    if payload is not None:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        if scaler is not None and "scaler" in payload:
            scaler.load_state_dict(payload["scaler"])
        state = TrainState(**payload["train_state"])
        saved_batch = payload["hidden"][0][0].shape[0]
        if saved_batch != tcfg.batch_size:
            raise ConfigError(
                f"train.batch_size is {tcfg.batch_size} but {run_dir} was trained with {saved_batch} streams",
                hint="resume with the run's batch size (the number of processes may change)",
            )
        hidden = _state_from_plain(
            [[t[rows] for t in layer] for layer in payload["hidden"]], hidden
        )
        if dist.enabled:
            torch.manual_seed(cfg.seed + 7919 * dist.rank + state.step)
        else:
            _set_rng_state(payload["rng"])
    if dist.is_main:
        if payload is not None:
            runs.truncate_metrics(run_dir, state.step)
        runs.write_config(run_dir, cfg.to_dict())
        runs.mark_running(run_dir)

    def save(which: str) -> None:
        full_hidden = [[dist.gather_rows(t) for t in layer] for layer in hidden]  # collective
        if not dist.is_main:
            return
        path = runs.checkpoint_path(run_dir, which)
        try:
            _save(path, full_hidden)
        except OSError as exc:
            raise CheckpointError(
                f"could not write {path} at step {state.step} ({exc.strerror or exc}); the previous {which}.pt is intact",
                hint=f"free disk space, then `lstmlab train --resume {run_dir}`",
            ) from None

    def _save(path: Path, full_hidden: list) -> None:
        save_checkpoint(
            path,
            {
                "config": cfg.to_dict(),
                "tokenizer": corpus.tokenizer.to_meta(),
                "corpus": {"name": corpus.name, "path": str(corpus.path)},
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "train_state": asdict(state),
                "hidden": _state_to_plain(full_hidden),
                "rng": _rng_state(),
                **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                "num_parameters": model.num_parameters(),
            },
        )

    def emit(record: dict) -> None:
        if not dist.is_main:
            return
        runs.append_metrics(run_dir, record)
        if on_event:
            on_event(record)

    def validate_now() -> dict:
        tokens = valid_tokens[: tcfg.eval_tokens + 1] if tcfg.eval_tokens else valid_tokens
        result = evaluate(
            model,
            _rank_slice(tokens, dist),
            batch_size=cfg.eval.batch_size,
            bptt=cfg.eval.bptt,
            char_lengths=corpus.tokenizer.char_lengths(),
            device=device,
        )
        result = EvalResult(*dist.sum([result.nats, result.tokens, result.chars], device))
        result = EvalResult(result.nats, int(result.tokens), int(result.chars))
        record = {
            "kind": "valid",
            "step": state.step,
            "tokens": state.tokens_seen,
            "elapsed_s": round(state.elapsed_s, 3),
            **{k: result.to_dict()[k] for k in ("loss", "bpc", "perplexity", "tokens")},
        }
        record["valid_tokens"] = record.pop("tokens")
        record["tokens"] = state.tokens_seen
        state.last_valid_step = state.step
        if math.isfinite(result.bpc) and result.bpc < state.best_valid_bpc:
            state.best_valid_bpc, state.best_step = result.bpc, state.step
            save("best")
        emit(record)
        return record

    def budget_left() -> str | None:
        if tcfg.max_steps and state.step >= tcfg.max_steps:
            return "max_steps"
        if tcfg.max_tokens and state.tokens_seen >= tcfg.max_tokens:
            return "max_tokens"
        if tcfg.max_epochs and state.step >= tcfg.max_epochs * steps_per_epoch:
            return "max_epochs"
        if tcfg.max_minutes and state.elapsed_s >= tcfg.max_minutes * 60:
            return "max_minutes"
        return None

    model.train()
    stop_reason = budget_left()
    final_valid = None
    window_tokens, window_time, last_rate = 0, 0.0, 0.0
    with _catch_stop_signals() as stop, progress.task("train", total=budget_steps) as bar:
        bar.advance(state.step)
        while stop_reason is None:
            t0 = time.perf_counter()
            if state.stream_pos >= streams.length:  # epoch boundary: start streams and state afresh
                state.epoch += 1
                state.stream_pos = 0
                hidden = model.initial_state(local_batch, device=device)
            x, y = streams.window(state.stream_pos, tcfg.bptt)
            x, y = x[rows].to(device, non_blocking=True), y[rows].to(device, non_blocking=True)
            hidden = detach_state(hidden)
            with autocast():
                logits, new_hidden = step_model(x, hidden)
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
                # LAMB's loss sums over the window: the same gradient direction, T times larger
                objective = loss * y.shape[1] if tcfg.loss == "window_sum" else loss
            optimizer.zero_grad(set_to_none=True)
            grad_norm = None
            # every rank must take the same branch, or DDP's gradient all-reduce would hang
            (loss_bad,) = dist.any([not bool(torch.isfinite(loss))], device)
            if not loss_bad:
                (scaler.scale(objective) if scaler else objective).backward()
                if scaler:
                    scaler.unscale_(optimizer)
                # the norm is computed either way: a finite loss can still give inf/NaN gradients
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), tcfg.grad_clip or math.inf
                )
            if scaler is not None and grad_norm is not None and not torch.isfinite(grad_norm):
                scaler.step(
                    optimizer
                )  # fp16 overflow: the scaler skips the step and lowers its scale
                scaler.update()
                hidden = _float_state(new_hidden)
            elif grad_norm is None or not torch.isfinite(grad_norm):
                what = (
                    f"loss became {float(loss.detach())}"
                    if grad_norm is None
                    else "gradients became non-finite"
                )
                if tcfg.on_nonfinite == "stop":
                    raise TrainingError(
                        f"{what} at step {state.step + 1}; nothing was saved from this step",
                        hint=f"last.pt holds step {state.step}; lower train.optimizer.lr or set train.grad_clip, "
                        "or set train.on_nonfinite=skip",
                    )
                optimizer.zero_grad(set_to_none=True)
                hidden = model.initial_state(local_batch, device=device)
                emit({"kind": "skip", "step": state.step + 1, "reason": what})
            else:
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                hidden = _float_state(new_hidden)
            scheduler.step()
            n = y.numel() * dist.world_size
            state.step += 1
            state.tokens_seen += n
            state.stream_pos += x.shape[1]
            dt = time.perf_counter() - t0
            state.elapsed_s += dt
            window_tokens += n
            window_time += dt
            if state.step % tcfg.log_every == 0:
                loss_v = float(loss.detach())
                chars = float(char_len[y.cpu()].sum()) if n else 1.0
                last_rate = window_tokens / max(window_time, 1e-9)
                record = {
                    "kind": "train",
                    "step": state.step,
                    "tokens": state.tokens_seen,
                    "epoch": state.epoch,
                    "loss": loss_v,
                    "bpc": loss_v * n / (math.log(2) * chars),
                    "lr": scheduler.get_last_lr()[0],
                    "tokens_per_s": last_rate,
                    "elapsed_s": round(state.elapsed_s, 3),
                }
                emit(record)
                bar.update(
                    info=f"loss {loss_v:.3f}  bpc {record['bpc']:.3f}  {last_rate:,.0f} tok/s  lr {record['lr']:.2e}"
                )
                window_tokens, window_time = 0, 0.0
            bar.advance(1)
            stop_reason = budget_left()
            if dist.enabled:  # ranks agree on stopping (time budgets and signals may differ)
                over, signalled = dist.any(
                    [stop_reason is not None, stop.signum is not None], device
                )
                stop_reason = stop_reason or ("max_minutes" if over else None)
                if signalled and stop.signum is None:
                    stop.signum = signal.SIGTERM
            if state.step % tcfg.eval_every == 0 and stop_reason is None:
                final_valid = validate_now()
                save("last")
            elif (
                tcfg.checkpoint_every
                and state.step % tcfg.checkpoint_every == 0
                and stop_reason is None
            ):
                save("last")
            if stop.signum is not None and stop_reason is None:
                save("last")
                if dist.is_main:
                    runs.clear_running(run_dir)
                name = (
                    "SIGINT" if stop.signum == signal.SIGINT else signal.Signals(stop.signum).name
                )
                raise TrainingInterrupted(
                    f"training stopped by {name} at step {state.step}; last.pt saved",
                    hint=f"continue with `lstmlab train --resume {run_dir}`",
                    signum=stop.signum,
                )
    if state.last_valid_step != state.step:
        final_valid = validate_now()
    save("last")
    emit(
        {
            "kind": "end",
            "step": state.step,
            "tokens": state.tokens_seen,
            "reason": stop_reason,
            "elapsed_s": round(state.elapsed_s, 3),
            "best_valid_bpc": state.best_valid_bpc,
            "best_step": state.best_step,
        }
    )
    if dist.is_main:
        runs.clear_running(run_dir)
    return TrainResult(
        run_dir=run_dir,
        state=state,
        stop_reason=stop_reason,
        num_parameters=model.num_parameters(),
        final_valid=final_valid,
        tokens_per_s=state.tokens_seen / max(state.elapsed_s, 1e-9),
    )


def load_run_config(run_dir: Path, overrides=()) -> RunConfig:
    """The stored recipe of a run (its config.yaml), with overrides applied, for --resume."""
    from lstmlab.config import load_recipe

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        from lstmlab.errors import CheckpointError

        raise CheckpointError(
            f"{run_dir} is not a run folder (no config.yaml)",
            hint="pass the folder `lstmlab train` created",
        )
    return load_recipe(path, overrides)


__all__ = [
    "TrainResult",
    "TrainState",
    "TrainingInterrupted",
    "fit",
    "load_run_config",
    "lr_factor",
]
