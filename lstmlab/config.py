"""The recipe schema: typed, frozen, strict; loaded from YAML with `--set` overrides.

A recipe pins everything a run depends on. Unknown keys, wrong types and
impossible values are all reported at once, each naming the key and the file,
before any work starts (ConfigError, exit code 2). Nothing mutates a validated
config; derived values (vocabulary size) are arguments, never fields.
"""

from __future__ import annotations

import contextlib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from lstmlab.cells.configs import (
    CELL_CONFIGS,
    MAX_SIZE,
    CellConfig,
    Float,
    Int,
    SLSTMConfig,
    slstm_positions,
)
from lstmlab.errors import ConfigError, LstmlabError

SCHEMA_VERSION = 1

# Counters (steps, tokens) may pass 2**31 on large corpora; torch's seeds and int64 stop at 2**63.
MAX_COUNT = 2**63 - 1
_PROBABILITY = {"default": 0.0, "ge": 0.0, "lt": 1.0}


_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


def parse_count(value: int | float | str) -> int:
    """1000000, 1e6, '1M', '250k', '1.5M' -> an integer count (ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a parameter count")
    if isinstance(value, (int, float)):
        count = value
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMgGbB]?)\s*", str(value))
        if not match:
            raise ValueError(f"{value!r} is not a parameter count (e.g. 1M, 250k, 24M)")
        count = float(match[1]) * _SUFFIX[match[2].lower()]
    if count != int(count) or not 1 <= count < 2**53:
        raise ValueError(f"{value!r} is not a whole positive parameter count")
    return int(count)


# `model.params: 1M` in YAML; stored back as the integer.
ParamCount = Annotated[int, BeforeValidator(parse_count)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Reference(Frozen):
    """Where a recipe's values come from, and the published figure it should reach."""

    source: str = Field(
        description="Where the values come from: paper, repository or command (free text)."
    )
    metric: str | None = Field(
        default=None, description="The metric the expected figure is in, e.g. test_bpc."
    )
    expected: Float | None = Field(
        default=None,
        description="The published figure this recipe should reach in `metric`; null when unknown.",
    )
    notes: str | None = Field(
        default=None, description="Free-text remarks (deviations from the source, caveats)."
    )


class DataConfig(Frozen):
    """Which prepared corpus to train on."""

    corpus: str = Field(
        min_length=1,
        description="Name of the prepared corpus folder under the data dir (e.g. ptb, enwik8, builtin).",
    )
    data_dir: Path | None = Field(
        default=None,
        description="Root folder of prepared corpora; null uses $LSTMLAB_DATA_DIR, else ./data.",
    )
    tokenizer: str | None = Field(
        default=None,
        description=(
            "Expected tokenizer of the prepared corpus (char, byte or sentencepiece); "
            "null accepts whichever it was prepared with."
        ),
    )


class DropoutConfig(Frozen):
    """AWD-LSTM's dropouts (Merity et al. 2018), each a probability in [0, 1)."""

    embedding: Float = Field(
        **_PROBABILITY,
        description="Drops whole embedding rows (symbols) and rescales the rest.",
    )
    input: Float = Field(
        **_PROBABILITY,
        description="Dropout on the first layer's input (its mask: see `mask`).",
    )
    hidden: Float = Field(
        **_PROBABILITY, description="Dropout on the output of every layer but the last."
    )
    output: Float = Field(
        **_PROBABILITY, description="Dropout on the last layer's output, before the softmax."
    )
    mask: Literal["window", "step"] = Field(
        default="window",
        description=(
            "The masks of input, hidden and output dropout. window: one mask per stream, shared "
            "by every step of a window (AWD-LSTM's locked dropout); step: a fresh mask at every "
            "step (LAMB's shared_mask_dropout: false, which the Mogrifier recipes use)."
        ),
    )
    weight: Float = Field(
        **_PROBABILITY,
        description=(
            "DropConnect on each cell's recurrent weight matrix, one mask per window; "
            "cells without one (mlstm) refuse a non-zero value."
        ),
    )


class EmbedInitConfig(Frozen):
    """How the embedding matrix is drawn at init (the papers differ; see each recipe)."""

    dist: Literal["normal", "uniform", "truncated_normal"] = Field(
        description=(
            "normal: N(0, scale²) (torch's nn.Embedding with scale 1); uniform: U(−scale, scale) "
            "(AWD-LSTM 0.1, Krause 0.2); truncated_normal: a normal cut at two standard "
            "deviations and widened so its standard deviation is `scale` (LAMB's variance_scaling)."
        )
    )
    scale: Float = Field(
        gt=0.0,
        le=100.0,
        description="Standard deviation (normal, truncated_normal) or bound (uniform) of each entry.",
    )


class ModelConfig(Frozen):
    """The network: embedding, a stack of recurrent layers, and the softmax head."""

    embed_dim: Int = Field(
        gt=0, le=MAX_SIZE, description="Width E of the symbol embedding (and of a tied softmax)."
    )
    num_layers: Int = Field(ge=1, le=4096, description="Number of stacked recurrent layers.")
    params: ParamCount | None = Field(
        default=None,
        description=(
            "Parameter budget of the whole language model (1M, 250k, 24M ...): at train time "
            "cell.hidden_dim (and slstm.hidden_dim) become the widest whose model fits it for the "
            "corpus vocabulary, as LAMB's num_params; the run's config.yaml keeps the width and "
            "the start line the exact count. null: cell.hidden_dim sets the width."
        ),
    )
    cell: CellConfig = Field(
        description="The recurrent cell of every layer; `kind` picks it (see `lstmlab cells`)."
    )
    dropout: DropoutConfig = Field(
        default=DropoutConfig(), description="AWD-LSTM's dropouts, each a probability in [0, 1)."
    )
    embed_init: EmbedInitConfig = Field(
        default=EmbedInitConfig(dist="normal", scale=1.0),
        description=(
            "Distribution of the embedding matrix at init; the default N(0, 1) is nn.Embedding's, "
            "fastest with Adam except for xLSTM blocks (docs/training.md, 'Embedding initialisation')."
        ),
    )
    tie_weights: bool = Field(
        default=False,
        description=(
            "Share the embedding matrix with the softmax; the last layer is then embed_dim wide "
            "(AWD-LSTM)."
        ),
    )
    final_norm: bool = Field(
        default=False,
        description="Weight-only LayerNorm between the last layer and the softmax head (xLSTM stacks).",
    )
    slstm: SLSTMConfig | None = Field(
        default=None,
        description="Config of the sLSTM blocks placed at `slstm_at` in an xLSTM stack; null: none.",
    )
    slstm_at: tuple[Int, ...] | str = Field(
        default=(),
        description=(
            'Layers built from `slstm` instead of `cell`: 0-based positions, or "xLSTM[a:b]" '
            "(a mLSTM blocks for every b sLSTM blocks)."
        ),
    )
    output_from: Literal["last", "sum"] = Field(
        default="last",
        description=(
            "What the softmax reads: the last layer's output, or the sum of every layer's "
            "(the official Mogrifier code)."
        ),
    )

    def layer_width(self, index: int) -> int | None:
        """Width of layer `index` (0-based): the cell's, but a tied last layer is embed_dim wide.

        None while `params` has yet to size the cell (see `sizing.resolve`).
        """
        last = index == self.num_layers - 1
        return self.embed_dim if (last and self.tie_weights) else self.cell.hidden_dim

    @property
    def sized(self) -> bool:
        """Whether every width is known (not waiting for `params` and a vocabulary)."""
        return self.cell.hidden_dim is not None

    def layer_config(self, index: int):
        """The cell config of layer `index` (0-based): `slstm` at `slstm_at`, else `cell`."""
        if index in slstm_positions(self.slstm_at, self.num_layers):
            return self.slstm
        return self.cell

    @model_validator(mode="after")
    def _buildable(self) -> ModelConfig:
        # Every rule a layer's constructor enforces, checked here so a recipe fails at load.
        problems = self._problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _problems(self) -> list[str]:
        try:
            positions = slstm_positions(self.slstm_at, self.num_layers)
        except ValueError as exc:
            return [f"slstm_at: {exc}"]
        problems = []
        sizing = self.cell.hidden_dim is None  # widths wait for `params` (checked again then)
        if sizing and self.params is None:
            return ["cell.hidden_dim: required key is missing (or set model.params to size it)"]
        if positions and self.slstm is None:
            problems.append(
                "slstm_at names sLSTM layers: set model.slstm (the sLSTM blocks' config)"
            )
        if self.slstm is not None and self.slstm.hidden_dim != self.cell.hidden_dim:
            problems.append(
                "slstm.hidden_dim must equal cell.hidden_dim (one residual stream)"
                + (": leave both to model.params" if sizing else "")
            )
        if (
            self.output_from == "sum"
            and self.tie_weights
            and self.embed_dim != self.cell.hidden_dim
        ):
            problems.append(
                "output_from 'sum' with tie_weights makes every layer embed_dim wide, so "
                "model.params has no width to size: set cell.hidden_dim = embed_dim instead"
                if sizing
                else "output_from 'sum' adds every layer's output, so all layers must be equally "
                "wide; tie_weights makes the last one embed_dim wide (set embed_dim = "
                "cell.hidden_dim or untie)"
            )
        if problems:
            return problems
        layers = [(i, self.layer_config(i)) for i in range(self.num_layers)]
        if self.dropout.weight:
            refusing = sorted({c.kind for _, c in layers if not c.accepts_weight_dropout})
            problems += [
                f"{kind} has no recurrent weight matrix for dropout.weight (DropConnect) to "
                f"act on; set dropout.weight: 0 (the cell's own `dropout` is the alternative)"
                for kind in refusing
            ]
        for index, config in layers:
            key = "cell" if config is self.cell else "slstm"
            width = self.layer_width(index)
            if width is None:
                continue  # sized later by `params`
            why = ""
            if width != config.hidden_dim:
                why = f" (layer {index} is embed_dim = {width} wide: tie_weights)"
            problems += [f"{key}.{p}{why}" for p in config.width_problems(width)]
        return list(dict.fromkeys(problems))  # one line per rule, not per layer


class OptimizerConfig(Frozen):
    """The optimizer and its hyperparameters."""

    name: Literal["adam", "adamw", "sgd"] = Field(
        default="adam",
        description="adam (L2 weight decay in the gradient), adamw (decoupled decay) or sgd.",
    )
    lr: Float = Field(gt=0.0, description="Peak learning rate (after warm-up).")
    weight_decay: Float = Field(
        default=0.0,
        ge=0.0,
        description="Weight decay coefficient applied to the parameters `decay` selects.",
    )
    betas: tuple[Float, Float] = Field(
        default=(0.9, 0.999),
        description="Adam's (beta1, beta2) moving-average factors, each in [0, 1).",
    )
    eps: Float = Field(default=1e-8, gt=0.0, description="Adam's denominator epsilon.")
    momentum: Float = Field(
        default=0.0, ge=0.0, lt=1.0, description="SGD momentum (sgd only), in [0, 1)."
    )
    decay: Literal["all", "matrices"] = Field(
        default="all",
        description=(
            "Which parameters weight_decay applies to: all (AWD-LSTM), or matrices only, sparing "
            "biases, norm weights, gains, skip vectors and the embedding (xLSTM, GPT-style AdamW)."
        ),
    )

    @model_validator(mode="after")
    def _betas_in_range(self) -> OptimizerConfig:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError("betas must each be in [0, 1)")
        return self


class ScheduleConfig(Frozen):
    """The learning-rate schedule: linear warm-up, then constant, cosine, linear or step."""

    name: Literal["constant", "cosine", "linear", "step"] = Field(
        default="constant",
        description=(
            "After warm-up: constant; cosine or linear decay to min_lr_ratio x lr over decay_steps, "
            "then flat; step: x factor at each of milestones_epochs."
        ),
    )
    warmup_steps: Int = Field(
        default=0, ge=0, le=MAX_COUNT, description="Steps of linear warm-up from 0 to lr."
    )
    min_lr_ratio: Float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Final learning rate of cosine/linear decay, as a fraction of lr.",
    )
    decay_steps: Int | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="Steps of cosine/linear decay after warm-up; null: the whole step budget.",
    )
    milestones_epochs: tuple[Float, ...] = Field(
        default=(),
        description="Epochs (fractions allowed) at which `step` multiplies lr by factor.",
    )
    factor: Float = Field(
        default=0.1, gt=0.0, description="Multiplier applied to lr at each milestone (step only)."
    )


class TrainConfig(Frozen):
    """Batching, optimisation, budgets, validation and checkpointing of a training run."""

    batch_size: Int = Field(
        gt=0, le=MAX_SIZE, description="Parallel streams per step (rows of the batch)."
    )
    bptt: Int = Field(
        gt=0, le=MAX_SIZE, description="Window length in tokens of truncated backpropagation."
    )
    optimizer: OptimizerConfig = Field(description="The optimizer and its hyperparameters.")
    schedule: ScheduleConfig = Field(
        default=ScheduleConfig(), description="The learning-rate schedule."
    )
    grad_clip: Float | None = Field(
        default=None,
        gt=0.0,
        description="Clip the global gradient L2 norm to this; null: no clipping.",
    )
    max_steps: Int | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="Budget in optimizer steps. Training stops at the first budget reached; set at least one.",
    )
    max_tokens: Int | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="Budget in training tokens (batch_size x bptt per step).",
    )
    max_minutes: Float | None = Field(
        default=None,
        gt=0.0,
        le=1e9,
        description=(
            "Budget in minutes of training-step time (validation and checkpoint saves "
            "excluded), summed over resumed sessions."
        ),
    )
    max_epochs: Float | None = Field(
        default=None,
        gt=0.0,
        le=1e9,
        description="Budget in passes over the training split (fractions allowed).",
    )
    eval_every: Int = Field(
        default=200,
        gt=0,
        le=MAX_COUNT,
        description="Steps between validations; each also saves last.pt (and best.pt when improved).",
    )
    checkpoint_every: Int | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="Extra saves of last.pt every this many steps; null: only at validations.",
    )
    eval_tokens: Int | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="Cap on validation tokens per periodic check; null scores the whole split.",
    )
    log_every: Int = Field(
        default=10, gt=0, le=MAX_COUNT, description="Steps between lines in metrics.jsonl."
    )
    loss: Literal["mean", "window_sum"] = Field(
        default="mean",
        description=(
            "mean: per-token mean; window_sum: summed over the window, mean over the batch "
            "(= bptt x mean), as LAMB/Mogrifier train, so their grad_clip and weight_decay apply unchanged."
        ),
    )
    ar_alpha: Float = Field(
        default=0.0,
        ge=0.0,
        le=1e6,
        description=(
            "AWD-LSTM's activation regularisation (AR): adds ar_alpha x the mean (over streams, "
            "steps and units) of the squared last-layer output after its dropout (model.dropout."
            "output) to the training objective; 0: off. Logged loss and bpc stay the pure "
            "cross-entropy; the penalty is logged as `penalty`."
        ),
    )
    tar_beta: Float = Field(
        default=0.0,
        ge=0.0,
        le=1e6,
        description=(
            "AWD-LSTM's temporal activation regularisation (TAR): adds tar_beta x the mean "
            "squared difference h_t - h_(t-1) of consecutive last-layer outputs before dropout, "
            "within each window; 0: off. With loss: window_sum the penalties are scaled by bptt "
            "like the cross-entropy."
        ),
    )
    drop_state: Float = Field(
        **_PROBABILITY,
        description=(
            "Before each training window, each stream's carried state is replaced by the "
            "initial state with this probability (LAMB's drop_state_probability: the model "
            "also learns to start from the zero state, as evaluation does); 0: off."
        ),
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        default="stop",
        description="On a NaN/inf loss or gradient: stop the run (keeping its checkpoints), or skip the step.",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32",
        description="Autocast precision of the step (fp16 with a grad scaler, CUDA only); the state stays float32.",
    )
    compile: bool = Field(
        default=False,
        description="Wrap the model in torch.compile for the training step (needs a C++ compiler).",
    )
    init_from: str | None = Field(
        default=None,
        description="Start from these trained weights (a run folder, a .pt checkpoint, an export "
        "folder or hf://user/repo): fine-tuning. The network must be the recipe's.",
    )
    extend_vocab: bool = Field(
        default=False,
        description="With init_from and char vocabularies: keep the rows of known symbols and add "
        "fresh ones for symbols the source lacks, instead of refusing another vocabulary.",
    )
    loggers: tuple[Literal["tensorboard", "wandb", "mlflow"], ...] = Field(
        default=(),
        description="Experiment trackers fed every metrics record (files inside the run folder by "
        "default); each is an extra: pip install 'lstmlab[NAME]'.",
    )

    @model_validator(mode="after")
    def _has_budget(self) -> TrainConfig:
        if not any((self.max_steps, self.max_tokens, self.max_minutes, self.max_epochs)):
            raise ValueError("set a budget: one of max_steps, max_tokens, max_minutes, max_epochs")
        return self

    @model_validator(mode="after")
    def _extend_needs_a_source(self) -> TrainConfig:
        if self.extend_vocab and not self.init_from:
            raise ValueError("extend_vocab applies to train.init_from; set it or drop extend_vocab")
        return self


class DynamicEvalConfig(Frozen):
    """Dynamic evaluation (Krause et al. 2018, arXiv:1709.07432); defaults: the authors' code."""

    lr: Float = Field(
        default=5e-5, ge=0.0, description="Step size η of the RMS-normalised updates."
    )
    decay: Float = Field(
        default=2e-3,
        ge=0.0,
        le=1.0,
        description="λ: each update pulls the weights back toward the trained ones by this fraction.",
    )
    eps: Float = Field(default=2e-5, gt=0.0, description="ε in ∇ / (RMS + ε).")
    segment_len: Int = Field(
        default=5, gt=0, le=MAX_SIZE, description="Tokens scored before each update (one stream)."
    )
    ms_batch_size: Int = Field(
        default=100,
        gt=0,
        le=MAX_SIZE,
        description="Streams used to gather the gradients' RMS statistics on the training split.",
    )
    ms_tokens: Int | None = Field(
        default=None,
        gt=0,
        le=MAX_COUNT,
        description="Training tokens read for the RMS statistics; null: the whole split.",
    )


class EvalConfig(Frozen):
    """How `lstmlab eval` scores a run (validation during training uses train.* sizes)."""

    batch_size: Int = Field(
        default=16, gt=0, le=MAX_SIZE, description="Parallel streams; the remainder is scored too."
    )
    bptt: Int = Field(
        default=256, gt=0, le=MAX_SIZE, description="Tokens per forward window while scoring."
    )
    temperature: Float = Field(
        default=1.0, gt=0.0, description="Softmax temperature at evaluation (1 = none)."
    )
    tune_temperature: bool = Field(
        default=False,
        description="Also search the temperature on valid and report test bpc with it (LAMB/Mogrifier practice).",
    )
    dynamic: DynamicEvalConfig = Field(
        default=DynamicEvalConfig(),
        description="Settings of dynamic evaluation, used by `lstmlab eval --dynamic`.",
    )


# A value `choices` may list: what YAML writes as a scalar (optuna stores these as they are).
Choice = bool | Int | Float | str | None


class TuneDimension(Frozen):
    """One searched recipe field: a range (low, high, log, int) or a list of choices."""

    low: Float | None = Field(
        default=None, description="Smallest value of a range (with high; not with choices)."
    )
    high: Float | None = Field(
        default=None, description="Largest value of a range, above low (inclusive)."
    )
    log: bool = Field(default=False, description="Sample the range on a log scale (needs low > 0).")
    int: bool | None = Field(
        default=None,
        description="Sample whole numbers; null: whole numbers exactly when the field is an integer.",
    )
    choices: tuple[Choice, ...] | None = Field(
        default=None,
        min_length=1,
        description="The values to choose from (scalars), instead of a range.",
    )

    @model_validator(mode="after")
    def _a_range_or_choices(self) -> TuneDimension:
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            if ranged or self.log or self.int is not None:
                raise ValueError("give either choices or a range (low, high, log, int), not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give a range (low and high) or choices")
        if not self.low < self.high:
            raise ValueError(f"low {self.low:g} must be below high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0 (low is {self.low:g})")
        return self


class PrunerConfig(Frozen):
    """When `lstmlab tune` stops a trial early: Optuna's median rule on validation bpc."""

    name: Literal["median", "none"] = Field(
        default="median",
        description="median: stop a trial whose validation bpc is worse than the median of "
        "earlier trials at the same tokens seen; none: every trial runs its whole budget.",
    )
    startup_trials: Int = Field(
        default=2, ge=0, le=MAX_COUNT, description="Trials that finish before any is pruned."
    )
    warmup_validations: Int = Field(
        default=1,
        ge=0,
        le=MAX_COUNT,
        description="Validations a trial makes before it may be pruned.",
    )


class TuneConfig(Frozen):
    """The search space of `lstmlab tune`; read by `lstmlab tune` only (`lstmlab train` ignores it)."""

    metric: Literal["valid_bpc"] = Field(
        default="valid_bpc",
        description="What the study minimises: a trial's best validation bpc.",
    )
    space: dict[str, TuneDimension] = Field(
        min_length=1,
        description="Searched fields by dotted recipe path (e.g. train.optimizer.lr), each a "
        "range or choices; every other field keeps the recipe's value.",
    )
    random_trials: Int = Field(
        default=5,
        ge=1,
        le=MAX_COUNT,
        description="Trials sampled at random before the TPE sampler models the results.",
    )
    pruner: PrunerConfig = Field(
        default=PrunerConfig(), description="When a trial is stopped early."
    )


class RunConfig(Frozen):
    """A complete recipe: everything a run depends on."""

    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION, description="Version of this schema; always 1."
    )
    name: str | None = Field(
        default=None, description="Run folder name under runs/; null: the recipe file's name."
    )
    reference: Reference | None = Field(
        default=None, description="Where the values come from and the figure to expect."
    )
    seed: Int = Field(
        default=0,
        ge=0,
        le=MAX_COUNT,
        description="Seed of every random number generator (init, dropout, batch order).",
    )
    data: DataConfig = Field(description="Which prepared corpus to train on.")
    model: ModelConfig = Field(description="The network.")
    train: TrainConfig = Field(description="How to train it.")
    eval: EvalConfig = Field(default=EvalConfig(), description="How `lstmlab eval` scores it.")
    tune: TuneConfig | None = Field(
        default=None,
        description="Search space for `lstmlab tune`; a declaration, not a setting of the run: "
        "`lstmlab train` ignores it and run folders never record it.",
    )

    @field_validator("schema_version", mode="before")
    @classmethod
    def _an_int(cls, value: Any) -> Any:
        # A Literal compares with ==, so `true` and 1.0 would pass as 1; a number must be one.
        if type(value) is not int:
            raise ValueError(f"must be the integer {SCHEMA_VERSION}")
        return value

    @field_validator("name")
    @classmethod
    def _a_folder_name(cls, value: str | None) -> str | None:
        from lstmlab.runs import validate_run_name

        if value is not None:
            try:
                validate_run_name(value)
            except LstmlabError as exc:
                raise ValueError(exc.message) from None
        return value

    def to_dict(self) -> dict:
        data = self.model_dump(mode="json")
        if data.get("tune") is None:
            data.pop("tune", None)  # recipes without a search space read as they always did
        return data

    def without_tune(self) -> RunConfig:
        """The recipe a run trains: the same, without the search space (not a setting of a run)."""
        return self if self.tune is None else self.model_copy(update={"tune": None})


# ---------------------------------------------------------------- errors


def _unwrap(annotation) -> tuple[type[BaseModel], ...]:
    """The pydantic models an annotation can hold (through Optional and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return (annotation,)
    return tuple(m for arg in typing.get_args(annotation) for m in _unwrap(arg))


_CELL_BY_KIND = {c.model_fields["kind"].default: c for c in CELL_CONFIGS}


def _shown_location(loc: tuple) -> str:
    """'model.cell.hidden_dim' for pydantic's ('model', 'cell', 'lstm', 'hidden_dim').

    A discriminated union puts the member's tag after the field; the tags are hidden by
    walking the schema alongside the location, so a user key that happens to spell a tag
    stays shown.
    """
    shown, models, tagged, member_tag = [], (RunConfig,), False, False
    for part in loc:
        if tagged and part in _CELL_BY_KIND:
            models, tagged = (_CELL_BY_KIND[part],), False
            continue
        if member_tag and isinstance(part, str):
            member_tag = False  # e.g. 'tuple[int, ...]' after slstm_at: the member tried
            continue
        shown.append(str(part))
        field = next((m.model_fields[part] for m in models if part in m.model_fields), None)
        tagged = field is not None and field.discriminator is not None
        member_tag = field is not None and _is_plain_union(field.annotation)
        models = _unwrap(field.annotation) if field is not None else ()
    return ".".join(shown)


def _is_plain_union(annotation) -> bool:
    """A union of two or more non-model types: pydantic names the member in error locations."""
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    return (
        origin in (typing.Union, types.UnionType)
        and len(members) > 1
        and not any(isinstance(m, type) and issubclass(m, BaseModel) for m in members)
    )


def _format_errors(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = _shown_location(err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        lines += [f"{where}: {loc}: {line}" for line in msg.splitlines()]
    return "\n".join(lines)


# ---------------------------------------------------------------- YAML


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"key {key!r} appears twice (lines {first} and {second})")
        self.key, self.first, self.second = key, first, second


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter where a recipe could be misread.

    A key given twice in one mapping is an error, not the last value silently winning;
    floats with an exponent and no dot (`3e-4`) are floats, as in YAML 1.2, not strings.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges are allowed to be overridden
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                with contextlib.suppress(TypeError):  # unhashable: the base class reports it
                    if key in seen:
                        raise DuplicateKeyError(key, seen[key], line)
                    seen[key] = line
        return super().construct_mapping(node, deep)


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with `RecipeLoader` (duplicate keys refused, 3e-4 a float)."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader subclass)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=3e-4' -> (['train', 'lr'], 0.0003). Values are parsed as YAML scalars/lists."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"override {text!r} is not of the form key.path=value", hint="e.g. --set train.lr=3e-4"
        )
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        # YAML 1.1 reads "3e-4" as a string; users mean a number
        with contextlib.suppress(ValueError):
            value = (
                float(value)
                if value.strip().lower() not in {"nan", "inf", "-inf", "infinity"}
                else value
            )
    return key.split("."), value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Set each `a.b.c=value` in a nested dict (a copy), creating sections that are absent."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a recipe file", hint="pass a .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe {path} does not exist", hint="see `ls recipes/`") from None
    except UnicodeDecodeError:
        raise ConfigError(f"recipe {path} is not UTF-8 text") from None
    try:
        data = load_yaml(text)
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"recipe {path}: {exc}", hint="keep one of them: a later one would silently win"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"recipe {path} is not valid YAML{where}") from None
    if data is None:
        raise ConfigError(f"recipe {path} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of sections (data, model, train, ...)")
    return data


def validate(data: Mapping, where: str = "recipe") -> RunConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping of sections (data, model, train, ...)")
    try:
        cfg = RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(
            _format_errors(exc, where),
            hint="fix the key(s) above in the recipe or the --set override",
        ) from None
    except (TypeError, ValueError) as exc:  # odd YAML types pydantic does not wrap
        raise ConfigError(f"{where}: {exc}") from None
    problems = tune_problems(cfg)
    if problems:
        raise ConfigError(
            "\n".join(f"{where}: tune.space.{p}" for p in problems),
            hint="name a numeric field of this recipe (see `lstmlab train RECIPE --dry-run`)",
        )
    return cfg


# ---------------------------------------------------------------- the search space


def tune_field(cfg: RunConfig, path: str) -> FieldInfo:
    """The schema field a dotted recipe path names in `cfg` (ValueError saying why not)."""
    node: Any = cfg
    info = None
    for depth, part in enumerate(path.split(".")):
        where = ".".join(path.split(".")[:depth])
        if node is None:
            raise ValueError(f"{where} is null in this recipe")
        if not isinstance(node, BaseModel):
            raise ValueError(f"{where} is a value, not a section")
        info = type(node).model_fields.get(part)
        if info is None or part == "tune":
            raise ValueError(f"the recipe has no field {part!r} under {where or 'the top level'}")
        node = getattr(node, part)
    if isinstance(node, BaseModel):
        raise ValueError("is a section, not a value")
    return info


def _scalar_types(annotation) -> set[type]:
    """The plain types a field holds, through Annotated, Optional and unions."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _scalar_types(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {t for arg in typing.get_args(annotation) for t in _scalar_types(arg)}
    if typing.get_origin(annotation) is Literal:
        return {type(v) for v in typing.get_args(annotation)}
    if typing.get_origin(annotation) is not None:  # tuple[...], dict[...]: not a single value
        return {typing.get_origin(annotation)}
    return {annotation} if isinstance(annotation, type) else {object}


def is_integer_field(info: FieldInfo) -> bool:
    return int in _scalar_types(info.annotation) and float not in _scalar_types(info.annotation)


def _refusal(info: FieldInfo, value: Any) -> str | None:
    """Why the field alone refuses `value` (its type and bounds; cross-field rules aside)."""
    from pydantic import TypeAdapter

    try:
        annotation = info.annotation
        if info.metadata:  # the field's bounds (gt, le, ...)
            annotation = typing.Annotated[(annotation, *info.metadata)]
        TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        return exc.errors()[0]["msg"]
    return None


def tune_problems(cfg: RunConfig) -> list[str]:
    """Each searched path that names no numeric (range) or scalar (choices) field of `cfg`,
    or whose bounds or choices that field refuses; one line each, starting with the path."""
    problems: list[str] = []
    for path, dim in cfg.tune.space.items() if cfg.tune else ():
        try:
            info = tune_field(cfg, path)
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
            continue
        kinds = _scalar_types(info.annotation)
        if dim.choices is not None:
            if kinds & {tuple, list, dict, object}:
                problems.append(f"{path}: choices apply to single values, this field is a list")
                continue
            values = [("choice", v) for v in dim.choices]
        elif not kinds & {int, float}:
            problems.append(f"{path}: a range needs a numeric field; give choices instead")
            continue
        else:
            whole = dim.int if dim.int is not None else is_integer_field(info)
            if dim.int is False and is_integer_field(info):
                problems.append(f"{path}: the field is an integer; drop `int: false`")
                continue
            if whole and not (dim.low.is_integer() and dim.high.is_integer()):
                problems.append(f"{path}: whole-number sampling needs whole-number low and high")
                continue
            cast = int if whole and is_integer_field(info) else float
            values = [("low", cast(dim.low)), ("high", cast(dim.high))]
        problems += [
            f"{path}: {label} {value!r} is refused: {why}"
            for label, value in values
            if (why := _refusal(info, value)) is not None
        ]
    return problems


def load_recipe(path: Path | str, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML recipe, apply `--set` overrides, validate. All problems in one ConfigError."""
    path = Path(path)
    return validate(apply_overrides(read_yaml(path), overrides), where=str(path))


__all__ = [
    "DataConfig",
    "DropoutConfig",
    "DynamicEvalConfig",
    "EmbedInitConfig",
    "EvalConfig",
    "MAX_COUNT",
    "MAX_SIZE",
    "ModelConfig",
    "PrunerConfig",
    "OptimizerConfig",
    "Reference",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TuneConfig",
    "TuneDimension",
    "apply_overrides",
    "load_recipe",
    "load_yaml",
    "parse_override",
    "tune_field",
    "tune_problems",
    "validate",
]
