"""`lstmlab tune`: search a recipe's `tune:` space with Optuna, one ordinary run per trial.

    result = run_study("recipes/tiny/mogrifier.yaml", trials=20)   # lstmlab tune ... --trials 20
    result.best.params, result.best_recipe                           # runs/tune-mogrifier/best.yaml

A trial takes the recipe, sets each searched field to the sampler's value and
trains it into `<study>/trial-NNNN/` with `train.fit`, like any run. The sampler
is TPE (Bergstra et al. 2011), seeded, drawing `tune.random_trials` trials at
random before it models the results. The study minimises the trial's best
validation bpc. Every validation's bpc is reported to the pruner with tokens
seen as its step, so trials are judged against each other at equal tokens; the
median pruner stops a trial whose bpc is worse than the median of earlier trials
at the same tokens, once `pruner.startup_trials` trials have completed and the
trial has made `pruner.warmup_validations` validations. A pruned trial ends as a
run that reached a budget does: last.pt saved, an `end` record with reason
`pruned`.

The study lives in its folder (`lstmlab.study`): Optuna's SQLite storage, so the
same command continues it after Ctrl-C or a crash, and runs until N trials are
done in total (complete, pruned or failed). A trial stopped by Ctrl-C (or left
running by a killed process) is marked failed with the reason `interrupted`, does
not count, and its parameters are queued to run first, as a new trial, when the
study continues; its run folder stays as it was (stopped, resumable by
`lstmlab train --resume`). A session's sampler is seeded with the study's seed
plus the number of trials already in it, so a continued study draws new points.
A sampled combination the recipe refuses (a rule between fields) fails that trial
with the reason; so does a training error (a non-finite loss). best.yaml is
rewritten after every trial.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstmlab import study as studies
from lstmlab.config import (
    RunConfig,
    TuneConfig,
    apply_overrides,
    is_integer_field,
    read_yaml,
    tune_field,
    validate,
)
from lstmlab.errors import ConfigError, LstmlabError, TrainingError, UsageError
from lstmlab.progress import Progress
from lstmlab.study import INTERRUPTED, StudyClaim, TrialRow

# Fields whose values change the tokens between two validations: with one of them
# searched, trials report at different tokens and the pruner can rarely compare them.
_TOKEN_GRID = ("train.batch_size", "train.bptt", "train.eval_every")


@dataclass
class StudyResult:
    study_dir: Path
    trials: list[TrialRow]
    best: TrialRow | None
    stopped: str  # "trials": N trials are done; "timeout": --timeout passed first
    best_recipe: Path | None


def default_study_dir(recipe: Path, cfg: RunConfig) -> Path:
    return Path("runs") / f"tune-{cfg.name or Path(recipe).stem}"


def distributions(optuna, cfg: RunConfig) -> dict[str, Any]:
    """Optuna's distribution for each searched path of a validated recipe."""
    out = {}
    for path, dim in cfg.tune.space.items():
        if dim.choices is not None:
            out[path] = optuna.distributions.CategoricalDistribution(list(dim.choices))
            continue
        whole = dim.int if dim.int is not None else is_integer_field(tune_field(cfg, path))
        if whole:
            out[path] = optuna.distributions.IntDistribution(
                int(dim.low), int(dim.high), log=dim.log
            )
        else:
            out[path] = optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.log)
    return out


def _sampler(optuna, tune: TuneConfig, seed: int):
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.random_trials)


def _pruner(optuna, tune: TuneConfig):
    if tune.pruner.name == "none":
        return optuna.pruners.NopPruner()
    # the warm-up counts validations (tune.pruner.warmup_validations), so none in tokens here
    return optuna.pruners.MedianPruner(
        n_startup_trials=tune.pruner.startup_trials, n_warmup_steps=0, interval_steps=1
    )


def trial_config(source: dict, params: dict[str, Any], where: str) -> RunConfig:
    """The recipe a trial trains: `source` with the trial's values (ConfigError if refused)."""
    return validate(studies.substitute(source, params), where=where)


def check_params(cfg: RunConfig, dists: dict, params: dict[str, Any]) -> None:
    """A parameter set given to try first must name searched fields, within their ranges."""
    for key, value in params.items():
        if key not in dists:
            raise ConfigError(
                f"first parameters name {key!r}, which tune.space does not search",
                hint=f"use the searched paths: {', '.join(dists)}",
            )
        if not _within(dists[key], value):
            raise ConfigError(f"first parameters: {key}={value!r} lies outside tune.space.{key}")


# ---------------------------------------------------------------- the study


def run_study(
    recipe: Path | str,
    *,
    trials: int,
    study_dir: Path | str | None = None,
    overrides: Iterable[str] = (),
    timeout_min: float | None = None,
    seed: int | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    on_event: Callable[[dict], None] | None = None,
    first_params: Sequence[dict[str, Any]] = (),
) -> StudyResult:
    """Tune `recipe` until `trials` trials are done in its study folder (see the module docstring).

    `seed` seeds the sampler (None: 0 for a new study, the recorded one when continuing).
    `timeout_min` stops starting trials after that many minutes of this session.
    `first_params` are parameter sets tried before the sampler's own, in a new study.
    `on_event` receives each trial's `trial_start` and `trial_end` records (number,
    params, state, value, tokens, best so far), warnings, and every record of the
    trial's training (as `fit` passes them).
    """
    from lstmlab.train import open_run_corpus

    optuna = studies.require_optuna()
    if trials < 1:
        raise UsageError(f"--trials {trials}: a study needs at least one trial", hint="--trials 1")
    recipe = Path(recipe)
    source = apply_overrides(read_yaml(recipe), list(overrides))
    cfg = validate(source, where=str(recipe))
    if cfg.tune is None:
        raise ConfigError(
            f"{recipe} has no `tune:` block: there is nothing to search",
            hint="add one (see docs/tuning.md), e.g. tune: {space: {train.optimizer.lr: "
            "{low: 1.0e-4, high: 1.0e-2, log: true}}}",
        )
    open_run_corpus(cfg)  # a missing corpus stops the study before its folder is made
    dists = distributions(optuna, cfg)
    for params in first_params:
        check_params(cfg, dists, params)
    emit = on_event or (lambda _record: None)
    claim = studies.claim_study_dir(
        study_dir or default_study_dir(recipe, cfg),
        recipe=str(recipe),
        source=source,
        config=cfg.to_dict(),
        seed=seed,
        data_root=Path(cfg.data.data_dir) if cfg.data.data_dir else None,
    )
    try:
        for warning in claim.lock.warnings:
            emit({"kind": "warning", "message": warning})
        searched = [p for p in _TOKEN_GRID if p in dists]
        if searched and cfg.tune.pruner.name != "none":
            emit(
                {
                    "kind": "warning",
                    "message": f"{', '.join(searched)} change the tokens between validations: "
                    "the pruner compares trials at equal tokens seen, so it can rarely compare these",
                }
            )
        session = _Session(optuna, claim, cfg, dists, device, progress, emit)
        result = session.run(trials, timeout_min, first_params)
    except (LstmlabError, KeyboardInterrupt):
        claim.lock.release()  # the study is consistent: the next command continues it
        raise
    except BaseException as exc:
        claim.lock.mark_failed(f"{type(exc).__name__}: {exc}")
        raise
    claim.lock.release()
    return result


def _within(dist, value) -> bool:
    if hasattr(dist, "choices"):
        return value in dist.choices
    return isinstance(value, (int, float)) and dist.low <= value <= dist.high


class _Session:
    """One `run_study` call on a claimed study folder: asks, trains and tells trials."""

    def __init__(self, optuna, claim: StudyClaim, cfg, dists, device, progress, emit) -> None:
        self.optuna, self.claim, self.cfg, self.dists = optuna, claim, cfg, dists
        self.device, self.progress, self.emit = device, progress, emit
        self.states = optuna.trial.TrialState
        self.storage = optuna.storages.RDBStorage(studies.storage_url(claim.study_dir))
        existing = self._existing_trials()
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=studies.STUDY_NAME,
            direction="minimize",
            sampler=_sampler(optuna, cfg.tune, claim.record["seed"] + existing),
            pruner=_pruner(optuna, cfg.tune),
            load_if_exists=True,
        )
        self.fresh = existing == 0

    def run(self, trials: int, timeout_min: float | None, first_params) -> StudyResult:
        retried = self._retry_interrupted()
        if retried:
            self.emit(
                {
                    "kind": "warning",
                    "message": f"trial(s) {', '.join(map(str, retried))} were interrupted; "
                    "their parameters run again first",
                }
            )
        if self.fresh:
            for params in first_params:
                self.study.enqueue_trial(params)
        deadline = None if timeout_min is None else time.monotonic() + timeout_min * 60
        stopped = "trials"
        while self.done() < trials:
            if deadline is not None and time.monotonic() >= deadline:
                stopped = "timeout"
                break
            self._run_trial(self.study.ask(self.dists))
            self._write_best()
        rows = studies.read_trials(self.claim.study_dir)
        best = next((r for r in rows if r.best), None)
        path = self.claim.study_dir / studies.BEST_FILE
        return StudyResult(self.claim.study_dir, rows, best, stopped, path if best else None)

    def _existing_trials(self) -> int:
        try:
            study = self.optuna.load_study(study_name=studies.STUDY_NAME, storage=self.storage)
        except KeyError:  # a new study
            return 0
        return len(study.get_trials(deepcopy=False))

    def done(self) -> int:
        """Trials that count towards --trials: complete, pruned, or failed other than by Ctrl-C."""
        return sum(
            t.state in (self.states.COMPLETE, self.states.PRUNED)
            or (t.state == self.states.FAIL and t.user_attrs.get("reason") != INTERRUPTED)
            for t in self.study.get_trials(deepcopy=False)
        )

    def best(self):
        complete = self.study.get_trials(deepcopy=False, states=(self.states.COMPLETE,))
        return min(complete, key=lambda t: (t.value, t.number)) if complete else None

    def _retry_interrupted(self) -> list[int]:
        """Trials a killed process left running: failed as interrupted, their parameters queued.

        The study's lock is held, so no live process is running them.
        """
        stale = self.study.get_trials(deepcopy=False, states=(self.states.RUNNING,))
        for frozen in stale:
            self._interrupted(frozen._trial_id, frozen.number, frozen.params)
        return [t.number for t in stale]

    def _interrupted(self, trial_id: int, number: int, params: dict) -> None:
        self.storage.set_trial_user_attr(trial_id, "reason", INTERRUPTED)
        self.storage.set_trial_user_attr(trial_id, "retried_as", "its parameters run again first")
        self.storage.set_trial_state_values(trial_id, state=self.states.FAIL)
        self.study.enqueue_trial(params, user_attrs={"retry_of": number})

    def _run_trial(self, trial) -> None:
        """Train one trial into its run folder and tell the study how it ended."""
        from lstmlab.train import TrainingInterrupted, fit

        folder = studies.trial_dir(self.claim.study_dir, trial.number)
        params = dict(trial.params)
        self.emit(
            {"kind": "trial_start", "number": trial.number, "params": params, "run": str(folder)}
        )
        state, value, reason, tokens = "failed", None, None, None
        judge = _Judge(trial, self.cfg.tune, self.emit)
        try:
            where = f"trial {trial.number}"
            trial_cfg = trial_config(self.claim.record["source"], params, where=where)
            result = fit(
                trial_cfg,
                folder,
                device=self.device,
                progress=self.progress,
                on_event=judge.on_event,
                stop_early=judge.stop_early,
            )
        except (TrainingInterrupted, KeyboardInterrupt) as exc:
            self._interrupted(trial._trial_id, trial.number, params)
            if isinstance(exc, TrainingInterrupted):
                raise TrainingInterrupted(
                    f"tuning stopped by a signal during trial {trial.number}; "
                    "its parameters run first when the study continues",
                    hint="continue with the same `lstmlab tune` command",
                    signum=exc.exit_code - 128,
                ) from None
            raise
        except (ConfigError, TrainingError) as exc:  # refused values, a non-finite loss
            reason = exc.message.splitlines()[0]
        except LstmlabError:  # not the values' fault (a corpus gone): stop, retry them later
            self._interrupted(trial._trial_id, trial.number, params)
            raise
        else:
            tokens = result.state.tokens_seen
            if result.stop_reason == "pruned":
                state, tokens = "pruned", judge.tokens
            elif math.isfinite(result.state.best_valid_bpc):
                state, value = "complete", result.state.best_valid_bpc
            else:
                reason = "no finite validation bpc"
        if reason is not None:
            trial.set_user_attr("reason", reason)
        tell = {
            "complete": {"values": value},
            "pruned": {"state": self.states.PRUNED},
            "failed": {"state": self.states.FAIL},
        }[state]
        frozen = self.study.tell(trial, **tell)
        best = self.best()
        self.emit(
            {
                "kind": "trial_end",
                "number": trial.number,
                "params": params,
                "state": state,
                "value": frozen.value,
                "tokens": tokens,
                "reason": reason,
                "best_number": best.number if best else None,
                "best_value": best.value if best else None,
            }
        )

    def _write_best(self) -> None:
        best = self.best()
        if best is not None:
            row = studies.trial_row(best, self.claim.study_dir, study_live=True)
            studies.write_best(self.claim.study_dir, self.claim.record, row, self.done())


class _Judge:
    """Reports every validation of a trial's run to the trial, and prunes it through `fit`'s
    stop_early hook (called after each periodic validation, never after the final one)."""

    def __init__(self, trial, tune: TuneConfig, emit: Callable[[dict], None]) -> None:
        self.trial, self.tune, self.emit = trial, tune, emit
        self.validations = 0
        self.tokens: int | None = None  # tokens seen at the last validation reported
        self.verdict: str | None = None

    def on_event(self, record: dict) -> None:
        bpc = record.get("bpc")
        if record.get("kind") == "valid" and isinstance(bpc, float) and math.isfinite(bpc):
            self.validations += 1
            self.tokens = record["tokens"]
            self.trial.report(bpc, step=record["tokens"])
            warm = self.validations > self.tune.pruner.warmup_validations
            if self.tune.pruner.name != "none" and warm and self.trial.should_prune():
                self.verdict = "pruned"
        self.emit(record)

    def stop_early(self, _record: dict) -> str | None:
        return self.verdict


__all__ = ["StudyResult", "default_study_dir", "distributions", "run_study", "trial_config"]
