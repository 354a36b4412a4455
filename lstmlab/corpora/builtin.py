"""`builtin`: English text that ships inside CPython, so a corpus needs no network.

The text is the interactive help's documentation topics, `pydoc_data.topics.topics`
(a dict of reference-manual sections; its values joined in sorted key order
with a blank line between them: about 465k characters, about 100 distinct).
With `with_docstrings` the module docstrings of the standard library are
appended: every `.py` file under `sysconfig.get_paths()["stdlib"]` in sorted
order, read with `ast.get_docstring` (nothing is imported), test suites,
IDLE, demos and installed packages left out. Both are deterministic for one
Python version, which is recorded in the corpus.

Split and vocabulary as for `text`: contiguous 0.9 / 0.05 / 0.05 by default,
every distinct character of the whole text, sorted.
"""

from __future__ import annotations

import ast
import hashlib
import os
import platform
import sysconfig
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lstmlab.corpora import store
from lstmlab.corpora.text import DEFAULT_FRACTIONS, check_fractions, write_char_corpus
from lstmlab.errors import CorpusError, UsageError
from lstmlab.progress import NullProgress, Progress

if TYPE_CHECKING:
    from lstmlab.corpora import PrepareRequest

# Folders of the standard library whose files are not module documentation.
SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "idle_test",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "site-packages",
        "dist-packages",
        "__pycache__",
    }
)


def prepare(request: PrepareRequest) -> store.Corpus:
    """Write the pydoc topics (and, if asked, the stdlib docstrings) as a character corpus."""
    request.check("builtin", options=("fractions", "with_docstrings"))
    if request.source is not None:
        raise UsageError(
            "builtin reads no --source; it uses the running Python's own documentation"
        )
    name = request.folder_name("builtin")
    fractions = check_fractions(request.options.get("fractions", DEFAULT_FRACTIONS))
    with_docstrings = bool(request.options.get("with_docstrings", False))
    text, sources = topics_text()
    if with_docstrings:
        docs, doc_sources = stdlib_docstrings(stdlib_dir(), request.progress)
        text = text + "\n\n" + docs
        sources.update(doc_sources)
    extra = {"python_version": platform.python_version(), "with_docstrings": with_docstrings}
    return write_char_corpus(
        request,
        name,
        text,
        fractions=fractions,
        sources=sources,
        extra=extra,
        what="the builtin text",
    )


def topics_text() -> tuple[str, dict[str, str]]:
    """pydoc's documentation topics joined in sorted key order, and the sha256 of their source."""
    try:
        from pydoc_data import topics
    except ImportError:
        raise CorpusError(
            "this Python has no pydoc_data.topics", hint="use `lstmlab prepare text FILE` instead"
        ) from None
    text = "\n\n".join(topics.topics[key] for key in sorted(topics.topics))
    path = Path(topics.__file__ or "")
    digest = (
        store.sha256_file(path)
        if path.is_file()
        else hashlib.sha256(text.encode("utf-8")).hexdigest()
    )
    return text, {"pydoc_data/topics.py": digest}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_docstrings(root: Path, progress: Progress | None = None) -> tuple[str, dict[str, str]]:
    """Module docstrings of the .py files under `root` (sorted), joined by blank lines, and the sha256 of every file read."""
    files = _module_files(root)
    docs, sources = [], {}
    with (progress or NullProgress()).task("read stdlib docstrings", total=len(files)) as task:
        for rel in files:
            data = (root / rel).read_bytes()
            sources[f"stdlib/{rel}"] = hashlib.sha256(data).hexdigest()
            doc = _docstring(data)
            if doc:
                docs.append(doc)
            task.advance()
    return "\n\n".join(docs), sources


def _module_files(root: Path) -> list[str]:
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(("config-", "."))]
        rel = Path(folder).relative_to(root)
        files.extend((rel / n).as_posix() for n in names if n.endswith(".py"))
    return sorted(files)


def _docstring(source: bytes) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # old escape sequences in a few modules
            return ast.get_docstring(ast.parse(source))
    except (SyntaxError, ValueError):
        return None  # not parseable by this Python: skip it rather than guess
