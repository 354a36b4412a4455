"""The Hugging Face Hub: `hf://user/repo[@revision]` model ids, and publishing an export.

Resolution goes through `huggingface_hub.snapshot_download`, so the Hub cache
is shared with every other Hugging Face tool. The environment is read at each
call (not when huggingface_hub was imported): HF_HUB_CACHE, else HF_HOME/hub,
names the cache; HF_HUB_OFFLINE=1 forbids the network and takes the snapshot
from the cache alone.

huggingface_hub is an optional dependency (`pip install "lstmlab[hub]"`); it is
imported only when a Hub id is used.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from lstmlab.errors import CheckpointError, LstmlabError, UsageError

PREFIX = "hf://"
INSTALL_HINT = 'install the Hub extra: pip install "lstmlab[hub]"'
# user/repo as the Hub spells it: letters, digits, '-', '_', '.', no leading/trailing dots
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TRUE = {"1", "true", "yes", "on"}


def is_hub_id(text: str) -> bool:
    """True for `hf://...`, and for `hf:/...` (what pathlib makes of it)."""
    return str(text).startswith("hf:/")


def parse_hub_id(text: str) -> tuple[str, str | None]:
    """`hf://user/repo[@revision]` -> ("user/repo", revision or None)."""
    body = re.sub(r"^hf:/+", "", str(text))
    repo_id, _, revision = body.partition("@")
    repo_id = repo_id.strip("/")
    if not _REPO_ID.match(repo_id) or ".." in repo_id or (_ and not revision):
        raise UsageError(
            f"{text!r} is not a Hub model id",
            hint="write hf://USER/REPO or hf://USER/REPO@REVISION",
        )
    return repo_id, revision or None


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cache_dir() -> Path | None:
    """The Hub cache the environment names now, or None for huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return None


def _huggingface_hub():
    try:
        import huggingface_hub
    except ImportError:
        raise UsageError("huggingface_hub is not installed", hint=INSTALL_HINT) from None
    return huggingface_hub


def resolve_hub_id(text: str) -> Path:
    """The local snapshot folder of `hf://user/repo[@revision]` (downloaded unless offline)."""
    repo_id, revision = parse_hub_id(text)
    hf = _huggingface_hub()
    from huggingface_hub import errors

    offline = is_offline()
    try:
        folder = hf.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir(),
            local_files_only=offline,
            library_name="lstmlab",
        )
    except errors.LocalEntryNotFoundError:
        where = cache_dir() or "the Hugging Face cache"
        raise CheckpointError(
            f"{text} is not in {where}"
            + (" and HF_HUB_OFFLINE is set" if offline else " and the Hub cannot be reached"),
            hint="download it once while online (unset HF_HUB_OFFLINE), or point HF_HUB_CACHE at a cache that has it",
        ) from None
    except errors.RevisionNotFoundError:
        raise CheckpointError(
            f"{repo_id} has no revision {revision!r}",
            hint="use a branch, tag or commit of the repo",
        ) from None
    except errors.RepositoryNotFoundError:
        raise CheckpointError(
            f"model repo {repo_id} does not exist on the Hub or is private",
            hint="check the id; for a private repo log in (`hf auth login`) or set HF_TOKEN",
        ) from None
    except (errors.HfHubHTTPError, OSError) as exc:
        raise CheckpointError(
            f"could not fetch {text} ({exc.__class__.__name__}: {str(exc)[:100]})",
            hint="check the network, or set HF_HUB_OFFLINE=1 to use the cache",
        ) from None
    return Path(folder)


def push_run(
    run,
    repo_id: str,
    *,
    private: bool = False,
    checkpoint: str = "best",
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Export `run` to a temporary folder and upload it to the model repo `repo_id`; its URL.

    The repo is created when it does not exist (`private` applies then only).
    """
    from lstmlab.portable import export_run

    repo_id, revision = parse_hub_id(repo_id if is_hub_id(repo_id) else PREFIX + repo_id)
    if revision:
        raise UsageError(f"push uploads to a repo's main branch; drop @{revision}")
    if is_offline():
        raise UsageError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded", hint="unset HF_HUB_OFFLINE to push"
        )
    hf = _huggingface_hub()
    from huggingface_hub import errors

    with tempfile.TemporaryDirectory(prefix="lstmlab-push-") as tmp:
        folder = export_run(
            run, Path(tmp) / "export", checkpoint=checkpoint, load_as=f"{PREFIX}{repo_id}"
        )
        api = hf.HfApi(token=token)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="model",
                commit_message=commit_message or f"Upload lstmlab export of {Path(str(run)).name}",
            )
        except errors.HfHubHTTPError as exc:
            raise LstmlabError(
                f"upload to {repo_id} failed ({str(exc).splitlines()[0][:120]})",
                hint="log in with `hf auth login` or pass --token / set HF_TOKEN with write access",
            ) from None
    return f"https://huggingface.co/{repo_id}"
