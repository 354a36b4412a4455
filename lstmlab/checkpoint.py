"""Checkpoints: plain-data dicts, written atomically, loaded without running code.

A checkpoint holds `format_version`, the resolved recipe, the tokenizer, the
model / optimizer / scheduler state dicts, the training state, the carried
recurrent state and the RNG state; never a pickled module. It is written to a
temporary file in the same folder, flushed to disk and renamed over the old
one, so a crash at any moment leaves either the old or the new file, never a
torn one. Loading uses `torch.load(weights_only=True)`: an untrusted file
cannot run code.

Integrity: the payload carries a sha256 over its whole content (every tensor's
dtype, shape and bytes, every value), recomputed on load, so a truncated or
altered file is named in a one-line error instead of loading silently wrong
weights.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lstmlab.errors import CheckpointError
from lstmlab.files import atomic_write

FORMAT_VERSION = 1


def content_digest(obj) -> str:
    """sha256 over a plain-data tree: dict keys sorted, tensors by dtype, shape and bytes."""
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def _feed(digest, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():  # hashlib reads the array's buffer directly: no copy of the weights
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        digest.update(b"{")
        for key in sorted(obj, key=str):
            digest.update(repr(key).encode())
            _feed(digest, obj[key])
        digest.update(b"}")
    elif isinstance(obj, (list, tuple)):
        digest.update(b"[")
        for item in obj:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(repr(obj).encode())


def save_checkpoint(path: Path, payload: dict) -> Path:
    """Write `payload` (plus format version, torch version and its sha256) to `path` atomically.

    The file gets the mode any new file gets under the umask (0o644 under 022).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, "torch_version": str(torch.__version__), **payload}
    payload["sha256"] = content_digest(payload)
    return atomic_write(path, lambda f: torch.save(payload, f), binary=True)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist",
            hint="pass a run folder or a .pt file written by `lstmlab train`",
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({exc.__class__.__name__})",
            hint="use the run's other checkpoint (best.pt / last.pt) or retrain",
        ) from None
    except Exception as exc:  # weights_only refusal (pickle.UnpicklingError) and friends
        raise CheckpointError(
            f"checkpoint {path} is not an lstmlab checkpoint or holds code objects ({exc.__class__.__name__})",
            hint="lstmlab loads only plain-data checkpoints it wrote itself",
        ) from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an lstmlab checkpoint of format {FORMAT_VERSION}")
    stored = payload.pop("sha256", None)
    if stored != content_digest(payload):
        raise CheckpointError(
            f"checkpoint {path} fails its checksum: the file was altered or damaged",
            hint="use the run's other checkpoint (best.pt / last.pt) or retrain",
        )
    return payload


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temp files a killed save left behind (they are never read); returns how many."""
    count = 0
    for tmp in Path(folder).glob(".*.pt.*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


@dataclass(frozen=True)
class InferenceCheckpoint:
    """A checkpoint loaded for eval/sample: the model and what names it.

    Unpacks as the classic 4-tuple `model, tokenizer, config, path`.
    `sha256` is the checkpoint's content digest (the one verified on load), so
    two files with the same weights and state share it; `corpus` is what
    training recorded about its corpus ({} for old checkpoints): name, the
    absolute folder and, from newer lstmlab, each split's sha256.
    """

    model: object
    tokenizer: object
    config: object
    path: Path
    which: str  # best, last, or "file" for a .pt named by path
    step: int | None
    sha256: str
    corpus: dict

    def __iter__(self):
        return iter((self.model, self.tokenizer, self.config, self.path))


def load_for_inference(
    run_or_checkpoint: Path, *, which: str = "best", device="cpu"
) -> InferenceCheckpoint:
    """The model of a run folder's `which` checkpoint (best, last or a .pt path), or of a .pt file.

    Never re-reads the recipe: the architecture and vocabulary come from the
    checkpoint. The model is in eval mode on `device`.
    """
    from lstmlab.config import validate
    from lstmlab.model import build_model
    from lstmlab.runs import CHECKPOINTS, resolve_checkpoint
    from lstmlab.tokenizers import tokenizer_from_meta

    path = resolve_checkpoint(run_or_checkpoint, which)
    payload = load_checkpoint(path)
    # The digest load_checkpoint verified; recomputed when it does not hand it on.
    sha256 = payload.pop("sha256", None) or content_digest(payload)
    try:
        cfg = validate(payload["config"], where=f"{path} (stored recipe)")
        tokenizer = tokenizer_from_meta(payload["tokenizer"], payload.get("corpus_dir"))
        model = build_model(cfg.model, tokenizer.vocab_size)
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit its own recipe ({exc.__class__.__name__}: {str(exc)[:120]})"
        ) from None
    model.to(device).eval()
    train_state = payload.get("train_state")
    step = train_state.get("step") if isinstance(train_state, dict) else None
    corpus = payload.get("corpus")
    stem = path.stem if path.parent.name == CHECKPOINTS else ""
    return InferenceCheckpoint(
        model=model,
        tokenizer=tokenizer,
        config=cfg,
        path=path,
        which=stem if stem in ("best", "last") else "file",
        step=step if isinstance(step, int) and not isinstance(step, bool) else None,
        sha256=sha256,
        corpus=dict(corpus) if isinstance(corpus, dict) else {},
    )
