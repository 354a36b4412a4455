"""What lstmlab offers: every registered cell and every packaged recipe, with parameter counts.

Both lists are read, never written down: cells from `lstmlab.cells.CELLS`,
recipes from `recipes/**/*.yaml`, so a new cell or recipe shows up without a
code change. Parameter counts build the model on PyTorch's meta device (shapes
only, no memory, no init cost), with the vocabulary of the prepared corpus
when there is one, else the known size of the standard corpora.

The recipe schema documents itself from the same data: `commented_yaml` writes a
resolved recipe with each key's description, type and default above it, and
`recipe_reference` writes docs/recipe-reference.md. Regenerate that file with

    python -m lstmlab.catalog > docs/recipe-reference.md
"""

from __future__ import annotations

import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType

import annotated_types
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from lstmlab.cells import CELLS
from lstmlab.cells.configs import CELL_CONFIGS
from lstmlab.compare import budget_text, cell_names
from lstmlab.config import ModelConfig, RunConfig, load_recipe
from lstmlab.corpora.store import default_data_dir, open_corpus, prepare_command
from lstmlab.errors import LstmlabError, UsageError

# Vocabulary sizes of the standard corpora, used when the corpus is not prepared here.
KNOWN_VOCAB_SIZES = {"ptb": 50, "enwik8": 256, "builtin": 103}


def count_parameters(model: ModelConfig, vocab_size: int) -> int:
    """Trainable parameters of the LanguageModel for `model`, tied weights counted once."""
    from lstmlab.model import build_model
    from lstmlab.sizing import count

    try:
        return count(model, vocab_size)
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
    default: str  # as YAML spells it (null, false, 0.1); "required" when there is none
    description: str = ""


@dataclass(frozen=True)
class CellInfo:
    name: str
    paper: str
    summary: str
    hyperparameters: tuple[Hyperparameter, ...]
    num_parameters: int | None
    problem: str | None = None  # why there is no count


def hyperparameters(config: type[BaseModel]) -> tuple[Hyperparameter, ...]:
    out = []
    for name, info in config.model_fields.items():
        if name == "kind":
            continue
        out.append(
            Hyperparameter(
                name, type_text(info.annotation), default_text(info), info.description or ""
            )
        )
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
            problem = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
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
        count, problem = None, f"needs corpus: `{prepare_command(cfg.data.corpus)}`"
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


# ---------------------------------------------------------------- schema documentation


def _members(annotation) -> tuple:
    """The alternatives of a union (Optional included), else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _sections(annotation) -> tuple[type[BaseModel], ...]:
    """The pydantic models a field can hold: one for a section, several for `cell`."""
    return tuple(
        m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)
    )


def type_text(annotation) -> str:
    """A field's type as a recipe writer reads it: int, float, [float, float], str | null."""
    if typing.get_origin(annotation) is typing.Annotated:
        return type_text(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is typing.Literal:
        values = typing.get_args(annotation)
        return "int" if all(isinstance(v, int) for v in values) else "str"
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"[{type_text(args[0])}, ...]"
        return "[" + ", ".join(type_text(a) for a in args) + "]"
    if typing.get_origin(annotation) is dict:
        key, value = typing.get_args(annotation)
        return f"{{{type_text(key)}: {type_text(value)}}}"
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        return " | ".join(dict.fromkeys(type_text(a) for a in typing.get_args(annotation)))
    if annotation is NoneType:
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _yaml_scalar(value) -> str:
    """One value as it appears after `key: ` in YAML (flow style for lists)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True)
    return text.removesuffix("...\n").strip()


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    default = info.get_default()
    if isinstance(default, BaseModel):
        return "defaults"
    return _yaml_scalar(list(default) if isinstance(default, tuple) else default)


def allowed_text(info: FieldInfo) -> str:
    """The values a field accepts beyond its type: choices and bounds ("> 0", "[0, 1)")."""
    choices = [
        v
        for m in _members(info.annotation)
        if typing.get_origin(m) is typing.Literal
        for v in typing.get_args(m)
    ]
    if len(choices) > 1:
        return " | ".join(str(c) for c in choices)
    if choices:
        return ""  # a fixed tag (`kind`, `schema_version`): the default says it
    low = high = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Gt):
            low = ("(", item.gt)
        elif isinstance(item, annotated_types.Ge):
            low = ("[", item.ge)
        elif isinstance(item, annotated_types.Lt):
            high = (")", item.lt)
        elif isinstance(item, annotated_types.Le):
            high = ("]", item.le)
        elif isinstance(item, annotated_types.MinLen):
            return f"length >= {item.min_length}"
    if low and high:
        return f"{low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return (">" if low[0] == "(" else ">=") + f" {_number(low[1])}"
    if high:
        return ("<" if high[0] == ")" else "<=") + f" {_number(high[1])}"
    return ""


def _number(x: float) -> str:
    # The integer bounds are powers of two less one; written so, they say why they are there.
    for bits in (31, 63):
        if x == 2**bits - 1:
            return f"2**{bits}-1"
    return f"{x:_}" if isinstance(x, int) else f"{x:g}"


def _comment(info: FieldInfo, width: int, indent: str) -> list[str]:
    facts = [type_text(info.annotation)]
    if not _sections(info.annotation) or info.is_required():
        facts.append(default_text(info) if info.is_required() else f"default {default_text(info)}")
    allowed = allowed_text(info)
    if allowed:
        facts.append(allowed)
    text = f"{info.description} ({', '.join(facts)})"
    return [
        f"{indent}# {line}" for line in textwrap.wrap(text, width=max(40, width - len(indent) - 2))
    ]


def _yaml_lines(model: BaseModel, indent: str, width: int) -> list[str]:
    data = model.model_dump(mode="json")  # paths as text, tuples as lists
    lines = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        lines += _comment(info, width, indent)
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:")
            lines += _yaml_lines(value, indent + "  ", width)
        else:
            lines.append(f"{indent}{name}: {_yaml_scalar(data[name])}")
    return lines


def commented_yaml(cfg: RunConfig, *, width: int = 100) -> str:
    """The resolved recipe as YAML, each key preceded by `# description (type, default ...)`.

    Loading the text back (`lstmlab.config.load_yaml`, then `validate`) gives `cfg` again.
    """
    return "\n".join(_yaml_lines(cfg, "", width)) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section_table(model: type[BaseModel]) -> list[str]:
    lines = [
        "| key | type | default | allowed | description |",
        "|---|---|---|---|---|",
    ]
    for name, info in model.model_fields.items():
        default = default_text(info)
        cells = [
            f"`{name}`",
            type_text(info.annotation),
            default if default in ("required", "defaults") else f"`{default}`",
            allowed_text(info),
            info.description or "",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _schema_sections(model: type[BaseModel], path: str) -> list[tuple[str, type[BaseModel]]]:
    """(dotted path, model) of `model` and every section below it, depth first."""
    out = [(path, model)]
    for name, info in model.model_fields.items():
        sections = _sections(info.annotation)
        if typing.get_origin(info.annotation) is dict:  # tune.space: a section per key
            sections = _sections(typing.get_args(info.annotation)[1])
            name = f"{name}.<path>"
        if len(sections) == 1:
            out += _schema_sections(sections[0], f"{path}.{name}" if path else name)
    return out


def recipe_reference() -> str:
    """The Markdown of docs/recipe-reference.md: every section and field of a recipe."""
    lines = [
        "# Recipe reference",
        "",
        "<!-- Generated from the schema (lstmlab/config.py, lstmlab/cells/configs.py);",
        "     do not edit. Regenerate: python -m lstmlab.catalog > docs/recipe-reference.md -->",
        "",
        "Every key a recipe (`recipes/<corpus>/<cell>.yaml`) or a `--set key.path=value` override",
        "can set. Unknown keys, wrong types (a `true` where a number belongs) and values outside",
        "*allowed* are refused when the recipe is loaded, all at once, with exit code 2.",
        "`lstmlab train RECIPE --dry-run` prints a resolved recipe with these descriptions.",
    ]
    for path, model in _schema_sections(RunConfig, ""):
        lines += ["", f"## `{path or '(top level)'}`", ""]
        if model.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += _section_table(model)
        if path == "model":
            lines += [
                "",
                "`model.cell` is one of the cells below, picked by its `kind`.",
            ]
            for config in CELL_CONFIGS:
                kind = config.model_fields["kind"].default
                lines += ["", f"### `model.cell` with `kind: {kind}`", ""]
                lines += [" ".join((config.__doc__ or "").split()), ""]
                lines += _section_table(config)
    return "\n".join(lines) + "\n"


def recipe_roots() -> list[Path]:
    """Where recipes are looked up by name: ./recipes, then the ones shipped with lstmlab."""
    package = Path(__file__).resolve().parent
    shipped = [package / "recipes", package.parent / "recipes"]  # installed; editable checkout
    roots = [Path("recipes"), *(p for p in shipped if p.is_dir())]
    return [p for p in dict.fromkeys(roots) if p.is_dir()]


def default_recipes_dir() -> Path:
    """./recipes when it exists, else the recipes shipped with lstmlab."""
    roots = recipe_roots()
    return roots[0] if roots else Path("recipes")


def find_recipe(name: Path | str) -> Path:
    """A recipe file or folder as given, else by name under the recipe roots (`tiny/lstm`)."""
    path = Path(name)
    if path.exists():
        return path
    for root in recipe_roots():
        for candidate in (root / path, root / path.with_suffix(".yaml")):
            if candidate.exists() and not path.is_absolute():
                return candidate
    return path  # as given: loading it names the missing file


__all__ = [
    "find_recipe",
    "recipe_roots",
    "KNOWN_VOCAB_SIZES",
    "CellInfo",
    "RecipeInfo",
    "cell_catalog",
    "commented_yaml",
    "count_parameters",
    "default_recipes_dir",
    "hyperparameters",
    "recipe_catalog",
    "recipe_files",
    "recipe_reference",
    "type_text",
    "vocab_size_of",
]


if __name__ == "__main__":
    print(recipe_reference(), end="")
