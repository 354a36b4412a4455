"""Models that leave the tool: a self-contained export folder, and one loader for every source.

An export folder holds everything needed to rebuild a trained model without
the run folder, the corpus or lstmlab's checkpoint format:

    OUT/model.safetensors     the weights; a tensor shared by several names (tied
                              embedding and softmax) is stored once, the other
                              names are listed in the file's metadata
    OUT/config.yaml           the resolved recipe the model was trained with
    OUT/tokenizer.json        the tokenizer's metadata; a sentencepiece model is
                              the file it names (spm.model), next to it
    OUT/README.md             the model card (cell, parameters, corpus, bpc, how to load)
    OUT/lstmlab-export.json   marker: format version, source checkpoint, step

`load(...)` accepts a run folder, a .pt checkpoint, an export folder or a Hub
id `hf://user/repo[@revision]` and returns a `LanguageModelHandle`: the torch
module, the tokenizer and the recipe, with `generate` and `score` for notebooks.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from lstmlab.errors import CheckpointError, UsageError

MARKER = "lstmlab-export.json"
EXPORT_FORMAT = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
TOKENIZER = "tokenizer.json"
CARD = "README.md"
# safetensors metadata key: {"alias name": "stored name"} for tensors shared between names
ALIASES_KEY = "lstmlab.aliases"


# ---------------------------------------------------------------- weights


def split_shared(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict[str, str]]:
    """(tensors to store, {alias: stored name}): each shared storage is kept under its first name.

    safetensors refuses tensors that share memory; a tied softmax (`head.weight`
    is `embedding.weight`) is the case every AWD-style model has.
    """
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        stored[name] = t.contiguous()
    return stored, aliases


def save_weights(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    stored, aliases = split_shared(state_dict)
    save_file(stored, str(path), metadata={"format": "pt", ALIASES_KEY: json.dumps(aliases)})


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The full state dict, aliases filled in with the tensor they share."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            aliases = json.loads((f.metadata() or {}).get(ALIASES_KEY, "{}"))
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not iterable)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({str(exc)[:100]})",
            hint="export the run again with `lstmlab export RUN OUT --force`",
        ) from None
    for alias, target in aliases.items():
        tensors[alias] = tensors[target]
    return tensors


# ---------------------------------------------------------------- export


def is_export(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def export_run(
    run, out: Path, *, checkpoint: str = "best", force: bool = False, load_as: str | None = None
) -> Path:
    """Write the self-contained export of a run (or .pt checkpoint) to `out`; returns `out`.

    A non-empty `out` is never overwritten unless it is an earlier lstmlab export
    and `force` is set. `load_as` is what the model card tells readers to load
    (default: `out`; `push` passes the Hub id).
    """
    from lstmlab.checkpoint import load_checkpoint
    from lstmlab.config import validate
    from lstmlab.runs import resolve_checkpoint, run_dir_of

    out = Path(out)
    _check_target(out, force)
    source = Path(run)
    if is_export(source):
        raise UsageError(
            f"{source} is already an export", hint="copy the folder, or export the run it came from"
        )
    ckpt = resolve_checkpoint(source, checkpoint)
    payload = load_checkpoint(ckpt)
    try:
        cfg = validate(payload["config"], where=f"{ckpt} (stored recipe)")
        tokenizer_meta = dict(payload["tokenizer"])
        state_dict = payload["model"]
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {ckpt} lacks {exc}") from None
    run_dir = run_dir_of(ckpt)
    # Write next to `out` and rename: a failed export never leaves a half-written folder.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        save_weights(state_dict, tmp / WEIGHTS)
        (tmp / CONFIG).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
        _write_tokenizer(tokenizer_meta, tmp)
        step = int(payload.get("train_state", {}).get("step", 0))
        marker = {
            "format": "lstmlab-export",
            "format_version": EXPORT_FORMAT,
            "source_checkpoint": str(ckpt),
            "step": step,
            "num_parameters": payload.get("num_parameters"),
            "torch_version": payload.get("torch_version"),
            # name and split checksums: eval refuses a corpus that is not the one trained on
            "corpus": {k: v for k, v in (payload.get("corpus") or {}).items() if k != "path"},
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        card = model_card(cfg, payload, run_dir, load_as or str(out))
        (tmp / CARD).write_text(card, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", hint="pick another output folder")
    if out.is_dir() and any(out.iterdir()):
        if not is_export(out):
            raise UsageError(
                f"{out} is not empty and is not an lstmlab export; refusing to overwrite it",
                hint="pick an empty or new output folder",
            )
        if not force:
            raise UsageError(
                f"{out} already holds an lstmlab export", hint="pass --force to replace it"
            )


def _write_tokenizer(meta: dict, folder: Path) -> None:
    """tokenizer.json; a sentencepiece model goes to its own file, which the json names."""
    meta = dict(meta)
    if meta.get("kind") == "sentencepiece":
        name = Path(meta.get("file") or "spm.model").name
        (folder / name).write_bytes(base64.b64decode(meta.pop("model")))
        meta["file"] = name
    (folder / TOKENIZER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _read_tokenizer(folder: Path):
    from lstmlab.tokenizers import tokenizer_from_meta

    path = folder / TOKENIZER
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc.__class__.__name__})") from None
    if meta.get("kind") == "sentencepiece" and "model" not in meta:
        model_file = folder / Path(meta.get("file") or "spm.model").name
        if not model_file.is_file():
            raise CheckpointError(
                f"{path} names {model_file.name}, which is missing from {folder}",
                hint="export the run again",
            )
        meta["model"] = base64.b64encode(model_file.read_bytes()).decode("ascii")
    return tokenizer_from_meta(meta, folder)


# ---------------------------------------------------------------- model card


def measured_bpc(run_dir: Path) -> list[tuple[str, float, str]]:
    """(what, bpc, where) of the run's best valid bpc (metrics.jsonl) and test bpc (eval.json)."""
    from lstmlab.runs import read_metrics

    found = []
    valid = [
        r
        for r in read_metrics(run_dir)
        if r.get("kind") == "valid" and isinstance(r.get("bpc"), (int, float))
    ]
    valid = [r for r in valid if math.isfinite(r["bpc"])]
    if valid:
        best = min(valid, key=lambda r: r["bpc"])
        found.append(("best valid", float(best["bpc"]), f"metrics.jsonl, step {best.get('step')}"))
    eval_path = Path(run_dir) / "eval.json"
    if eval_path.is_file():
        try:
            splits = json.loads(eval_path.read_text(encoding="utf-8")).get("splits", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            splits = {}
        for split in ("valid", "test"):
            entry = splits.get(split) if isinstance(splits, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("bpc"), (int, float)):
                found.append((f"{split} (lstmlab eval)", float(entry["bpc"]), "eval.json"))
                dyn = entry.get("dynamic")
                if isinstance(dyn, dict) and isinstance(dyn.get("bpc"), (int, float)):
                    found.append((f"{split}, dynamic evaluation", float(dyn["bpc"]), "eval.json"))
    return found


def _split_checksums(corpus: Mapping | None) -> dict[str, dict]:
    """The corpus manifest's per-split token counts and sha256, when the corpus is still there."""
    if not isinstance(corpus, Mapping) or not corpus.get("path"):
        return {}
    meta = Path(corpus["path"]) / "meta.json"
    try:
        splits = json.loads(meta.read_text(encoding="utf-8"))["splits"]
        return {name: dict(info) for name, info in splits.items()}
    except (OSError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def model_card(cfg, payload: Mapping, run_dir: Path, out: str) -> str:
    """README.md of an export: Hub front matter, then what the model is and how to load it."""
    model = cfg.model
    kinds = sorted({model.layer_config(i).kind for i in range(model.num_layers)})
    layers = ", ".join(
        f"{model.layer_config(i).kind}({model.layer_config(i).hidden_dim})"
        for i in range(model.num_layers)
    )
    params = payload.get("num_parameters")
    step = payload.get("train_state", {}).get("step")
    corpus = payload.get("corpus") or {}
    corpus_name = corpus.get("name") or cfg.data.corpus
    tokenizer_kind = payload.get("tokenizer", {}).get("kind", "?")
    lines = [
        "---",
        "library_name: lstmlab",
        "tags:",
        "- lstmlab",
        "- character-level",
        "- language-model",
        *(f"- {k}" for k in kinds),
        "---",
        "",
        f"# {cfg.name or run_dir.name}",
        "",
        f"A recurrent language model trained with lstmlab on `{corpus_name}`.",
        "",
        "| | |",
        "|---|---|",
        f"| cell | {', '.join(kinds)} |",
        f"| layers | {model.num_layers}: {layers} |",
        f"| embedding | {model.embed_dim}{' (tied to the softmax)' if model.tie_weights else ''} |",
        f"| parameters | {params:,} |" if isinstance(params, int) else "| parameters | ? |",
        f"| tokenizer | {tokenizer_kind} |",
        f"| corpus | {corpus_name} |",
        f"| training step | {step} |",
        "",
        "## Measured bits per character",
        "",
    ]
    bpcs = measured_bpc(run_dir)
    if bpcs:
        lines += ["| measurement | bpc | source |", "|---|---|---|"]
        lines += [f"| {what} | {bpc:.4f} | {where} |" for what, bpc, where in bpcs]
        lines += [
            "",
            "The best valid figure is from the validations during training; the exported "
            "checkpoint is the one named in `lstmlab-export.json`.",
        ]
    else:
        lines.append("None recorded: the run has no validation in metrics.jsonl and no eval.json.")
    checksums = _split_checksums(corpus)
    if checksums:
        lines += ["", "## Corpus splits", "", "| split | tokens | sha256 |", "|---|---|---|"]
        lines += [
            f"| {name} | {info.get('tokens', '?')} | `{info.get('sha256', '?')}` |"
            for name, info in checksums.items()
        ]
    lines += [
        "",
        "## How to load it",
        "",
        "```python",
        "import lstmlab",
        "",
        f'lm = lstmlab.load("{out}")',
        'print(lm.generate(prime="\\n", length=200, seed=0))',
        'print(lm.score("some text").bpc)',
        "lm.module  # the torch.nn.Module",
        "```",
        "",
        "From the shell:",
        "",
        "```",
        f"lstmlab sample {out}",
        f'lstmlab score {out} --text "some text"',
        "```",
        "",
        "Files: `model.safetensors` (weights; tied tensors are stored once and named in the "
        f"file's `{ALIASES_KEY}` metadata), `config.yaml` (the resolved recipe), "
        "`tokenizer.json` (vocabulary), `lstmlab-export.json` (export format and source).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- loading


def resolve_model_source(path_or_id) -> Path:
    """A local path for a run folder, checkpoint, export folder or `hf://user/repo[@rev]`.

    A Hub id is fetched into (or, offline, found in) the Hugging Face cache.
    `Path("hf://a/b")` collapses to `hf:/a/b`; both spellings are accepted.
    """
    from lstmlab import hub

    text = str(path_or_id)
    if hub.is_hub_id(text):
        return hub.resolve_hub_id(text)
    return Path(path_or_id)


def load_model(path_or_id, *, which: str = "best", device="cpu"):
    """(model in eval mode on `device`, tokenizer, RunConfig, source path) from any model source.

    `which` picks a run folder's checkpoint (best, last, step-N) or is a .pt path itself.
    """
    from lstmlab.checkpoint import load_for_inference

    path = resolve_model_source(path_or_id)
    if which.endswith(".pt") or Path(which).is_file():  # --checkpoint PATH: that file itself
        if not Path(which).is_file():
            raise CheckpointError(
                f"checkpoint {which} does not exist", hint="pass best, last or a .pt file"
            )
        return load_for_inference(Path(which), device=device)
    if path.is_dir() and is_export(path):
        return _load_export(path, device)
    if path.is_dir() and (path / WEIGHTS).is_file():
        raise CheckpointError(
            f"{path} has {WEIGHTS} but no {MARKER}: not an lstmlab export",
            hint="export models with `lstmlab export RUN OUT`",
        )
    return load_for_inference(path, which=which, device=device)


def load_export_for_inference(folder: Path, device="cpu"):
    """An export folder as `checkpoint.InferenceCheckpoint` (which="export"), for eval."""
    from lstmlab.checkpoint import InferenceCheckpoint
    from lstmlab.corpora.store import sha256_file

    model, tokenizer, cfg, folder = _load_export(Path(folder), device)
    marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    corpus = marker.get("corpus") if isinstance(marker.get("corpus"), dict) else {}
    step = marker.get("step") if isinstance(marker.get("step"), int) else None
    return InferenceCheckpoint(
        model, tokenizer, cfg, folder, "export", step, sha256_file(folder / WEIGHTS), corpus
    )


def _load_export(folder: Path, device):
    from lstmlab.config import validate
    from lstmlab.model import build_model

    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{folder / MARKER} is unreadable") from None
    if marker.get("format_version") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{folder} is an export of format {marker.get('format_version')}, this lstmlab reads {EXPORT_FORMAT}",
            hint="upgrade lstmlab or export the run again",
        )
    try:
        recipe = yaml.safe_load((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CheckpointError(
            f"{folder / CONFIG} is unreadable ({exc.__class__.__name__})"
        ) from None
    cfg = validate(recipe, where=str(folder / CONFIG))
    tokenizer = _read_tokenizer(folder)
    model = build_model(cfg.model, tokenizer.vocab_size)
    try:
        model.load_state_dict(load_weights(folder / WEIGHTS))
    except RuntimeError as exc:
        raise CheckpointError(
            f"{folder / WEIGHTS} does not fit {folder / CONFIG} ({str(exc)[:120]})",
            hint="export the run again",
        ) from None
    model.to(device).eval()
    return model, tokenizer, cfg, folder


@dataclass
class LanguageModelHandle:
    """A trained model for notebooks: `.module` (torch), `.tokenizer`, `.config`, generate, score."""

    module: torch.nn.Module
    tokenizer: object
    config: object
    source: Path
    device: torch.device

    def generate(
        self,
        prime: str = "\n",
        length: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> str:
        """`length` sampled symbols after the prime, decoded (the prime itself is not included)."""
        from lstmlab.generate import generate

        prime_ids = self.tokenizer.encode(prime or "\n")
        ids = list(
            generate(
                self.module,
                prime_ids,
                length,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                seed=seed,
                device=self.device,
            )
        )
        return self.tokenizer.decode(ids)

    def score(self, text: str):
        """ScoreResult(total_bits, bpc, chars, tokens) of `text` (see `lstmlab.score`)."""
        from lstmlab.score import score_text

        return score_text(
            self.module,
            self.tokenizer,
            text,
            temperature=self.config.eval.temperature,
            device=self.device,
        )

    def __repr__(self) -> str:
        cells = sorted(
            {self.config.model.layer_config(i).kind for i in range(self.config.model.num_layers)}
        )
        params = sum(p.numel() for p in self.module.parameters())
        return (
            f"LanguageModelHandle({'/'.join(cells)}, {self.config.model.num_layers} layers, "
            f"{params:,} parameters, vocabulary {self.tokenizer.vocab_size}, from {self.source})"
        )


def load(path_or_id, *, device="cpu", checkpoint: str = "best") -> LanguageModelHandle:
    """Load a run folder, a .pt checkpoint, an export folder or `hf://user/repo[@rev]`."""
    from lstmlab.device import resolve_device

    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    model, tokenizer, cfg, source = load_model(path_or_id, which=checkpoint, device=dev)
    return LanguageModelHandle(model, tokenizer, cfg, Path(source), dev)


__all__ = [
    "LanguageModelHandle",
    "export_run",
    "load",
    "load_model",
    "resolve_model_source",
]
