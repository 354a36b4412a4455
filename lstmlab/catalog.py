"""What lstmlab offers: every registered cell and every packaged recipe, with parameter counts.

Both lists are read, never written down: cells from `lstmlab.cells.CELLS`,
recipes from `recipes/**/*.yaml`, so a new cell or recipe shows up without a
code change. Parameter counts build the model on PyTorch's meta device (shapes
only, no memory, no init cost), with the vocabulary of the prepared corpus
when there is one, else the known size of the standard corpora.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from lstmlab.cells import CELLS
from lstmlab.compare import budget_text, cell_names
from lstmlab.config import ModelConfig, load_recipe
from lstmlab.corpora.store import default_data_dir, open_corpus
from lstmlab.errors import LstmlabError, UsageError

# Vocabulary sizes of the standard corpora, used when the corpus is not prepared here.
KNOWN_VOCAB_SIZES = {"ptb": 50, "enwik8": 256, "builtin": 103}


def count_parameters(model: ModelConfig, vocab_size: int) -> int:
    """Trainable parameters of the LanguageModel for `model`, tied weights counted once."""
    import torch

    from lstmlab.model import build_model

    try:
        with torch.device("meta"):
            return build_model(model, vocab_size).num_parameters()
    except (RuntimeError, ValueError):  # an init that reads values cannot run on meta tensors
        return build_model(model, vocab_size).num_parameters()


def vocab_size_of(corpus: str, data_dir: Path | None = None) -> int | None:
    """The prepared corpus's vocabulary size, else the standard one, else None."""
    try:
        return open_corpus(data_dir or default_data_dir(), corpus).vocab_size
    except LstmlabError:
        return KNOWN_VOCAB_SIZES.get(corpus)


# ---------------------------------------------------------------- cells


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    type: str
    default: str  # "required" when the field has no default


@dataclass(frozen=True)
class CellInfo:
    name: str
    paper: str
    summary: str
    hyperparameters: tuple[Hyperparameter, ...]
    num_parameters: int | None
    problem: str | None = None  # why there is no count


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


def hyperparameters(config: type[BaseModel]) -> tuple[Hyperparameter, ...]:
    out = []
    for name, info in config.model_fields.items():
        if name == "kind":
            continue
        default = "required" if info.is_required() else repr(info.get_default())
        out.append(Hyperparameter(name, _type_name(info.annotation), default))
    return tuple(out)


def cell_catalog(
    *, hidden_dim: int, embed_dim: int, num_layers: int, vocab_size: int
) -> list[CellInfo]:
    """Every registered cell; the count is the whole model with the cell's defaults."""
    if min(hidden_dim, embed_dim, num_layers, vocab_size) < 1:
        raise UsageError("--hidden, --embed-dim, --layers and --vocab must be >= 1")
    cells = []
    for name, spec in CELLS.items():
        count, problem = None, None
        try:
            model = ModelConfig(
                embed_dim=embed_dim,
                num_layers=num_layers,
                cell=spec.config(hidden_dim=hidden_dim).model_dump(),
            )
            count = count_parameters(model, vocab_size)
        except ValidationError as exc:
            problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        except (ValueError, RuntimeError) as exc:
            problem = str(exc).splitlines()[0]
        doc = (spec.config.__doc__ or "").strip().splitlines()
        cells.append(
            CellInfo(
                name=name,
                paper=spec.paper,
                summary=doc[0] if doc else "",
                hyperparameters=hyperparameters(spec.config),
                num_parameters=count,
                problem=problem,
            )
        )
    return cells


# ---------------------------------------------------------------- recipes


@dataclass(frozen=True)
class RecipeInfo:
    path: str
    corpus: str | None = None
    cells: str | None = None
    num_parameters: int | None = None
    budget: str | None = None
    source: str | None = None
    problem: str | None = None  # why a field is missing (invalid recipe, corpus unknown)


def recipe_files(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise UsageError(
            f"recipe folder {root} does not exist", hint="pass --recipes-dir (the repo's recipes/)"
        )
    return sorted(root.rglob("*.yaml"))


def recipe_catalog(root: Path, data_dir: Path | None = None) -> list[RecipeInfo]:
    """Every recipe under `root`; an invalid one is listed with its problem, not dropped."""
    infos = []
    for path in recipe_files(root):
        shown = str(path.relative_to(Path(root).parent))  # recipes/tiny/lstm.yaml
        try:
            cfg = load_recipe(path)
        except LstmlabError as exc:
            infos.append(RecipeInfo(path=shown, problem=exc.message.splitlines()[0]))
            continue
        vocab = vocab_size_of(cfg.data.corpus, data_dir or cfg.data.data_dir)
        count, problem = None, f"needs corpus: `lstmlab prepare {cfg.data.corpus}`"
        if vocab:
            try:
                count, problem = count_parameters(cfg.model, vocab), None
            except (RuntimeError, ValueError) as exc:
                problem = f"cannot build: {str(exc).splitlines()[0]}"
        infos.append(
            RecipeInfo(
                path=shown,
                corpus=cfg.data.corpus,
                cells=cell_names(cfg.to_dict()["model"]),
                num_parameters=count,
                budget=budget_text(cfg.to_dict()["train"]),
                source=cfg.reference.source if cfg.reference else None,
                problem=problem,
            )
        )
    return infos


def default_recipes_dir() -> Path:
    """./recipes when it exists, else the recipes/ folder beside the installed package."""
    here = Path("recipes")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / "recipes"


__all__ = [
    "KNOWN_VOCAB_SIZES",
    "CellInfo",
    "RecipeInfo",
    "cell_catalog",
    "count_parameters",
    "default_recipes_dir",
    "hyperparameters",
    "recipe_catalog",
    "recipe_files",
    "vocab_size_of",
]
