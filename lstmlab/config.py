"""The recipe schema: typed, frozen, strict; loaded from YAML with `--set` overrides.

A recipe pins everything a run depends on. Unknown keys, wrong types and
impossible values are all reported at once, each naming the key and the file,
before any work starts (ConfigError, exit code 2). Nothing mutates a validated
config; derived values (vocabulary size) are arguments, never fields.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lstmlab.cells.configs import CellConfig, SLSTMConfig, slstm_positions
from lstmlab.errors import ConfigError

SCHEMA_VERSION = 1


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Reference(Frozen):
    """Where a recipe's values come from, and the published figure it should reach."""

    source: str
    metric: str | None = None
    expected: float | None = None
    notes: str | None = None


class DataConfig(Frozen):
    corpus: str = Field(min_length=1)
    data_dir: Path | None = None  # None: $LSTMLAB_DATA_DIR or ./data
    tokenizer: str | None = (
        None  # when set, must match the prepared corpus (char, byte, sentencepiece)
    )


class DropoutConfig(Frozen):
    """AWD-LSTM's dropouts, each a probability in [0, 1).

    embedding: whole embedding rows (words/characters) dropped; input: locked dropout on the
    first layer's input; hidden: locked dropout between layers; output: locked dropout on the
    last layer's output; weight: DropConnect on each cell's recurrent matrix.
    """

    embedding: float = Field(default=0.0, ge=0.0, lt=1.0)
    input: float = Field(default=0.0, ge=0.0, lt=1.0)
    hidden: float = Field(default=0.0, ge=0.0, lt=1.0)
    output: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight: float = Field(default=0.0, ge=0.0, lt=1.0)


class ModelConfig(Frozen):
    embed_dim: int = Field(gt=0)
    num_layers: int = Field(ge=1)
    cell: CellConfig
    dropout: DropoutConfig = DropoutConfig()
    # AWD-LSTM ties the softmax to the embedding and makes the last layer embed_dim wide.
    tie_weights: bool = False
    # xLSTM stacks: a weight-only LayerNorm between the last layer and the head, and the
    # layers built from `slstm` instead of `cell`: 0-based positions or "xLSTM[a:b]".
    final_norm: bool = False
    slstm: SLSTMConfig | None = None
    slstm_at: tuple[int, ...] | str = ()

    # What the softmax reads: the last layer's output, or the sum of every layer's (Mogrifier code).
    output_from: Literal["last", "sum"] = "last"

    @model_validator(mode="after")
    def _slstm_layers(self) -> ModelConfig:
        positions = slstm_positions(self.slstm_at, self.num_layers)
        if positions and self.slstm is None:
            raise ValueError(
                "slstm_at names sLSTM layers: set model.slstm (the sLSTM block's config)"
            )
        if self.slstm is not None and self.slstm.hidden_dim != self.cell.hidden_dim:
            raise ValueError(
                "model.slstm.hidden_dim must equal model.cell.hidden_dim (one residual width)"
            )
        return self

    def layer_config(self, index: int):
        """The cell config of layer `index` (0-based): `slstm` at `slstm_at`, else `cell`."""
        if index in slstm_positions(self.slstm_at, self.num_layers):
            return self.slstm
        return self.cell

    @model_validator(mode="after")
    def _sum_needs_equal_widths(self) -> ModelConfig:
        if (
            self.output_from == "sum"
            and self.tie_weights
            and self.embed_dim != self.cell.hidden_dim
        ):
            raise ValueError(
                "output_from 'sum' adds every layer's output, so all layers must be equally wide; "
                "tie_weights makes the last one embed_dim wide (set embed_dim = cell.hidden_dim or untie)"
            )
        return self


class OptimizerConfig(Frozen):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    # "all" decays every parameter (AWD-LSTM); "matrices" spares biases, norm weights, gains,
    # skip vectors and the embedding (xLSTM, GPT-style AdamW).
    decay: Literal["all", "matrices"] = "all"

    @model_validator(mode="after")
    def _betas_in_range(self) -> OptimizerConfig:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError("betas must each be in [0, 1)")
        return self


class ScheduleConfig(Frozen):
    """After `warmup_steps` of linear warm-up: constant; cosine or linear decay to min_lr_ratio x lr
    over `decay_steps` (default: the whole step budget), then flat; step (x factor at milestones)."""

    name: Literal["constant", "cosine", "linear", "step"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    decay_steps: int | None = Field(default=None, gt=0)
    milestones_epochs: tuple[float, ...] = ()
    factor: float = Field(default=0.1, gt=0.0)


class TrainConfig(Frozen):
    batch_size: int = Field(gt=0)
    bptt: int = Field(gt=0)
    optimizer: OptimizerConfig
    schedule: ScheduleConfig = ScheduleConfig()
    grad_clip: float | None = Field(default=None, gt=0.0)
    # Budgets: training stops at the first one reached; at least one must be set.
    max_steps: int | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_minutes: float | None = Field(default=None, gt=0.0)
    max_epochs: float | None = Field(default=None, gt=0.0)
    eval_every: int = Field(
        default=200, gt=0
    )  # steps between validations (each also saves last.pt)
    checkpoint_every: int | None = Field(default=None, gt=0)  # extra last.pt saves, in steps
    eval_tokens: int | None = Field(default=None, gt=0)  # cap on valid tokens per periodic check
    log_every: int = Field(default=10, gt=0)
    # mean: per-token mean. window_sum: summed over the window, mean over the batch (= bptt x mean),
    # as LAMB/Mogrifier train; their grad_clip and weight_decay values then apply unchanged.
    loss: Literal["mean", "window_sum"] = "mean"
    on_nonfinite: Literal["stop", "skip"] = "stop"
    # Mixed precision by autocast (fp16 with a grad scaler, CUDA only); state stays float32.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False  # wrap the model in torch.compile for the training step

    @model_validator(mode="after")
    def _has_budget(self) -> TrainConfig:
        if not any((self.max_steps, self.max_tokens, self.max_minutes, self.max_epochs)):
            raise ValueError("set a budget: one of max_steps, max_tokens, max_minutes, max_epochs")
        return self


class DynamicEvalConfig(Frozen):
    """Dynamic evaluation (Krause et al. 2018, arXiv:1709.07432); defaults: the authors' code.

    lr: η; decay: λ (pull back toward the trained weights); eps: ε in ∇/(RMS + ε);
    segment_len: tokens scored before each update (batch 1); ms_batch_size and
    ms_tokens: streams and training-token cap (None = whole split) for the RMS statistics.
    """

    lr: float = Field(default=5e-5, ge=0.0)
    decay: float = Field(default=2e-3, ge=0.0, le=1.0)
    eps: float = Field(default=2e-5, gt=0.0)
    segment_len: int = Field(default=5, gt=0)
    ms_batch_size: int = Field(default=100, gt=0)
    ms_tokens: int | None = Field(default=None, gt=0)


class EvalConfig(Frozen):
    batch_size: int = Field(default=16, gt=0)  # parallel streams; the remainder is scored too
    bptt: int = Field(default=256, gt=0)
    temperature: float = Field(default=1.0, gt=0.0)  # softmax temperature at evaluation
    # Also search the temperature on valid and report test bpc with it (LAMB/Mogrifier practice).
    tune_temperature: bool = False
    dynamic: DynamicEvalConfig = DynamicEvalConfig()  # used by `lstmlab eval --dynamic`


class RunConfig(Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str | None = None
    reference: Reference | None = None
    seed: int = 0
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig = EvalConfig()

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# Fields that define the network's shape: a resumed run takes them from its checkpoint.
ARCHITECTURE_KEYS = ("model",)


def _format_errors(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{where}: {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


_UNION_TAGS: set[str] = set()


def _register_union_tags() -> None:
    # pydantic puts the discriminator value ("lstm") into error locations; hide it.
    from lstmlab.cells.configs import CELL_KINDS

    _UNION_TAGS.update(CELL_KINDS)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=3e-4' -> (['train', 'lr'], 0.0003). Values are parsed as YAML scalars/lists."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"override {text!r} is not of the form key.path=value", hint="e.g. --set train.lr=3e-4"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
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
        data = yaml.safe_load(text)
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
    if not _UNION_TAGS:
        _register_union_tags()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping of sections (data, model, train, ...)")
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(
            _format_errors(exc, where),
            hint="fix the key(s) above in the recipe or the --set override",
        ) from None
    except (TypeError, ValueError) as exc:  # odd YAML types pydantic does not wrap
        raise ConfigError(f"{where}: {exc}") from None


def load_recipe(path: Path | str, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML recipe, apply `--set` overrides, validate. All problems in one ConfigError."""
    path = Path(path)
    return validate(apply_overrides(read_yaml(path), overrides), where=str(path))


__all__ = [
    "ARCHITECTURE_KEYS",
    "DataConfig",
    "DropoutConfig",
    "DynamicEvalConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimizerConfig",
    "Reference",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "load_recipe",
    "parse_override",
    "validate",
]
