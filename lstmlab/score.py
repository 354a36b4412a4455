"""Scoring arbitrary text: total bits, bits per character, and each character's surprisal.

The text is read as one stream (batch 1) in windows of `window` tokens with the
recurrent state carried across, so memory stays flat in the text's length.
Every token is scored before the model sees it. The first token has no
prediction of its own, so the text is scored as if it followed a newline (the
context `lstmlab sample` primes with): every character gets a surprisal. When
the vocabulary has no newline, the first token is skipped and the result says so.

Surprisal of a token = −log2 p(token | everything before). bpc = total bits /
characters, where characters are counted as `lstmlab eval` counts them
(`tokenizer.char_lengths()`: bytes for byte corpora). Per character:

- char tokenizer: one token per character, its bits;
- subword (sentencepiece): a token's bits are spread evenly over its characters;
- byte tokenizer and sentencepiece byte pieces: a character's bits are the sum
  of its UTF-8 bytes' bits.

Shapes: N tokens of the text, T window, V vocabulary.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lstmlab.errors import UsageError, VocabularyError

LN2 = math.log(2.0)
CONTEXT = "\n"  # what the text is assumed to follow


@dataclass(frozen=True)
class ScoreResult:
    """Bits of a text under a model; `char_bits[i]` is the surprisal of `text[first_char + i]`."""

    total_bits: float
    bpc: float
    chars: int  # characters predicted, counted as eval counts them
    tokens: int  # tokens predicted
    text: str = ""
    char_bits: np.ndarray | None = None
    first_char: int = 0  # 0 when the text followed a newline; else characters left unscored
    spread: bool = False  # a token's bits were spread over its characters (subword)
    dynamic: bool = False

    @property
    def note(self) -> str:
        """How the per-character figures were made, in a sentence or two."""
        parts = []
        if self.first_char == 0:
            parts.append(
                "the text is scored as if it followed a newline, so every character is predicted"
            )
        else:
            parts.append(
                f"the vocabulary has no newline to start from: the first {self.first_char} "
                "character(s) have no prediction and are not scored"
            )
        if self.spread:
            parts.append("subword tokens: a token's bits are spread evenly over its characters")
        if self.dynamic:
            parts.append(
                "dynamic evaluation: the weights adapt to the text after scoring each segment"
            )
        return "; ".join(parts)


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of `text`, or a VocabularyError naming the first unknown characters and where."""
    if tokenizer.kind != "char":
        return tokenizer.encode(text)
    known = set(tokenizer.symbols)
    aliases = tokenizer.aliases
    unknown: list[tuple[int, str]] = []
    for index, ch in enumerate(text):
        if aliases.get(ch, ch) not in known:
            unknown.append((index, ch))
    if not unknown:
        return tokenizer.encode(text)
    first_index = unknown[0][0]
    line = text.count("\n", 0, first_index) + 1
    column = first_index - (text.rfind("\n", 0, first_index) + 1) + 1
    distinct = list(dict.fromkeys(ch for _, ch in unknown))
    shown = ", ".join(repr(c) for c in distinct[:5]) + (
        f" and {len(distinct) - 5} more" if len(distinct) > 5 else ""
    )
    lowered = [c for c in distinct if c.lower() != c and aliases.get(c.lower(), c.lower()) in known]
    if lowered:
        hint = (
            "this vocabulary is lowercase (PTB-style): lowercase the text first, e.g. `tr A-Z a-z`"
        )
    else:
        printable = "".join(sorted(s for s in tokenizer.symbols if s.isprintable()))
        hint = f"remove or replace them; the model knows: {printable}"
    raise VocabularyError(
        f"text has {len(unknown)} character(s) outside the model's vocabulary, "
        f"first at line {line} column {column}: {shown}",
        hint=hint,
    )


def _context_ids(tokenizer) -> list[int] | None:
    try:
        ids = tokenizer.encode(CONTEXT)
    except VocabularyError:
        return None
    return ids or None


@torch.no_grad()
def token_nats(
    model, ids: np.ndarray, *, window: int = 512, temperature: float = 1.0, device="cpu"
) -> np.ndarray:
    """Nats of ids[1:] (N − 1,) given everything before, in windows of `window` tokens."""
    was_training = model.training
    model.eval()
    out = np.empty(len(ids) - 1, dtype=np.float64)
    state = model.initial_state(1, device=device)
    try:
        for start in range(0, len(out), window):
            end = min(start + window, len(out))
            chunk = torch.as_tensor(ids[start : end + 1], dtype=torch.long, device=device)
            logits, state = model(chunk[None, :-1], state)  # (1, T, V)
            logp = (logits[0].float() / temperature).log_softmax(-1)  # (T, V)
            out[start:end] = -logp.gather(-1, chunk[1:, None]).squeeze(-1).double().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def _token_char_counts(tokenizer, ids: np.ndarray) -> np.ndarray:
    """Characters of the text each token starts (0 for a UTF-8 continuation byte)."""
    if tokenizer.kind == "byte":
        ids = np.asarray(ids)
        return ((ids < 0x80) | (ids >= 0xC0)).astype(np.int64)
    return np.asarray(tokenizer.char_lengths())[np.asarray(ids)]


def spread_over_chars(bits: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-character bits from per-token bits: a token's bits split evenly over its characters;
    a token that starts no character (continuation byte) adds its bits to the character before."""
    out = np.zeros(int(counts.sum()), dtype=np.float64)
    pos, carry = 0, 0.0
    for b, n in zip(bits, counts):
        if n > 0:
            out[pos : pos + n] = (b + carry) / n
            pos, carry = pos + n, 0.0
        elif pos > 0:
            out[pos - 1] += b
        else:
            carry += b
    return out


def score_text(
    model,
    tokenizer,
    text: str,
    *,
    window: int = 512,
    temperature: float = 1.0,
    device="cpu",
    dynamic=None,
) -> ScoreResult:
    """Bits of `text` under `model`; `dynamic` is a `DynamicEvaluator` to adapt while scoring."""
    if not text:
        raise UsageError("the text to score is empty")
    if window < 1:
        raise UsageError(f"the scoring window must be >= 1 token, got {window}")
    context = _context_ids(tokenizer)
    body = encode_text(tokenizer, text)
    ids = np.asarray((context or []) + body, dtype=np.int64)
    if len(ids) < 2:
        raise UsageError(
            "the text is a single symbol and the vocabulary has no newline to predict it from",
            hint="score a longer text",
        )
    if dynamic is not None:
        nats = dynamic.token_nats(ids, temperature=temperature, device=device)
    else:
        nats = token_nats(model, ids, window=window, temperature=temperature, device=device)
    predicted = ids[1:]  # (N − 1,)
    lengths = np.asarray(tokenizer.char_lengths())
    chars = int(lengths[predicted].sum())
    total_bits = float(nats.sum() / LN2)
    body_bits = nats[len(context) - 1 :] / LN2 if context else np.concatenate([[0.0], nats / LN2])
    counts = _token_char_counts(tokenizer, np.asarray(body, dtype=np.int64))
    char_bits = spread_over_chars(body_bits, counts)
    first_char = 0 if context else int(counts[0])
    if len(char_bits) != len(text):  # the tokenizer counts characters differently: no per-char view
        char_bits = None
    elif first_char:
        char_bits = char_bits[first_char:]
    return ScoreResult(
        total_bits=total_bits,
        bpc=total_bits / max(chars, 1),
        chars=chars,
        tokens=len(predicted),
        text=text,
        char_bits=char_bits,
        first_char=first_char,
        spread=tokenizer.kind == "sentencepiece",
        dynamic=dynamic is not None,
    )


# ---------------------------------------------------------------- writers


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_char(ch: str) -> str:
    return _ESCAPES.get(ch, ch if ch.isprintable() else f"\\u{ord(ch):04x}")


def _require_chars(result: ScoreResult) -> np.ndarray:
    if result.char_bits is None:
        raise UsageError(
            "this tokenizer's characters do not line up with the text; no per-character view"
        )
    return result.char_bits


def write_tsv(result: ScoreResult, path: Path, *, source: str = "") -> Path:
    """index<TAB>char<TAB>bits per character; `#` lines first say what was scored and how."""
    bits = _require_chars(result)
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"# lstmlab score{' of ' + source if source else ''}\n")
        f.write(
            f"# bpc {result.bpc:.6f}, total bits {result.total_bits:.3f}, chars {result.chars}\n"
        )
        f.write(f"# {result.note}\n")
        f.write("# char escapes: \\n newline, \\t tab, \\r return, \\\\ backslash\n")
        f.write("index\tchar\tbits\n")
        start = result.first_char
        for i, b in enumerate(bits):
            f.write(f"{start + i}\t{escape_char(result.text[start + i])}\t{b:.4f}\n")
    return path


# Perceptual scale: matplotlib's magma, reversed, so low surprisal is a light
# background and high surprisal a dark one (white text). Nine anchors, lerped.
_MAGMA_R = [
    (0xFC, 0xFD, 0xBF),
    (0xFE, 0xC2, 0x87),
    (0xFB, 0x87, 0x61),
    (0xE5, 0x59, 0x64),
    (0xB5, 0x36, 0x7A),
    (0x81, 0x25, 0x81),
    (0x4F, 0x12, 0x7B),
    (0x1C, 0x10, 0x44),
    (0x00, 0x00, 0x04),
]


def colour(fraction: float) -> tuple[int, int, int]:
    """The scale's colour at `fraction` in [0, 1] (clipped)."""
    f = min(max(float(fraction), 0.0), 1.0) * (len(_MAGMA_R) - 1)
    k = min(int(f), len(_MAGMA_R) - 2)
    t = f - k
    a, b = _MAGMA_R[k], _MAGMA_R[k + 1]
    return tuple(round(a[i] + (b[i] - a[i]) * t) for i in range(3))


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _dark(rgb: tuple[int, int, int]) -> bool:
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] < 128


def scale_max(bits: np.ndarray) -> float:
    """Top of the colour scale: the 99th percentile rounded up to a whole bit (at least 1)."""
    if len(bits) == 0:
        return 1.0
    return float(max(1.0, math.ceil(np.percentile(bits, 99))))


_VISIBLE = {" ": "\u00b7", "\t": "\u2192", "\n": "\u21b5", "\r": "\u240d"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; background: #ffffff; color: #111111; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
p.meta { color: #444444; margin: 0 0 12px 0; font-size: 13px; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 12px; margin-bottom: 16px; }
.bar { width: 320px; height: 14px; border: 1px solid #888888; background: linear-gradient(to right, STOPS); }
.ticks { display: flex; justify-content: space-between; width: 322px; }
pre.text { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 16px; line-height: 1.6;
           white-space: pre-wrap; word-break: break-all; margin: 0; }
pre.text span { border-radius: 2px; }
span.ws { color: #777777; }
span.dark { color: #ffffff; }
span.dark.ws { color: #cccccc; }
"""


def _attr(text: str) -> str:
    """Escaped for a double-quoted attribute; single quotes stay readable in the tooltip."""
    return html.escape(text, quote=False).replace('"', "&quot;")


def write_html(result: ScoreResult, path: Path, *, title: str = "") -> Path:
    """A self-contained page: each character on a background coloured by its surprisal."""
    bits = _require_chars(result)
    top = scale_max(bits)
    stops = ", ".join(_hex(colour(k / 8)) for k in range(9))
    css = _CSS.replace("STOPS", stops)
    heading = f"{result.bpc:.3f} bits per character"
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n")
        f.write(f"<title>{html.escape(heading + (' - ' + title if title else ''))}</title>\n")
        f.write(f"<style>{css}</style>\n</head>\n<body>\n")
        f.write(f"<h1>{html.escape(heading)}</h1>\n")
        f.write(
            f"<p class='meta'>{html.escape(title)}{' &middot; ' if title else ''}"
            f"{result.chars:,} characters, {result.total_bits:,.1f} bits in all. "
            f"{html.escape(result.note)}. Hover a character for its surprisal; "
            "\u00b7 marks a space, \u2192 a tab, \u21b5 a line end.</p>\n"
        )
        f.write(
            "<div class='legend'><span>surprisal</span><div><div class='bar'></div><div class='ticks'>"
        )
        for k in range(5):
            f.write(f"<span>{top * k / 4:g}</span>")
        f.write(f"</div></div><span>bits (\u2265 {top:g} shown darkest)</span></div>\n")
        f.write("<pre class='text'>")
        start = result.first_char
        if start:
            f.write(
                f"<span class='ws' title='not scored'>{html.escape(result.text[:start])}</span>"
            )
        for i, b in enumerate(bits):
            ch = result.text[start + i]
            rgb = colour(b / top)
            classes = ["dark"] if _dark(rgb) else []
            shown = _VISIBLE.get(ch)
            if shown is not None:
                classes.append("ws")
            label = f"{start + i}: '{escape_char(ch)}' {b:.2f} bits"
            cls = f" class='{' '.join(classes)}'" if classes else ""
            text = html.escape(shown if shown is not None else ch)
            f.write(
                f"<span{cls} style='background:{_hex(rgb)}' title=\"{_attr(label)}\">{text}</span>"
            )
            if ch == "\n":
                f.write("\n")
        f.write("</pre>\n</body>\n</html>\n")
    return path


# ---------------------------------------------------------------- dynamic evaluation


def dynamic_scorer(
    model, tokenizer, cfg, *, settings=None, data_dir=None, device="cpu", progress=None
):
    """A DynamicEvaluator whose gradient statistics come from the model's training corpus.

    Raises UsageError (exit 2) when that corpus is not prepared here or has
    another vocabulary: without its statistics dynamic evaluation has no scale.
    """
    from lstmlab.corpora.store import default_data_dir, open_corpus, prepare_command
    from lstmlab.dynamic_eval import DynamicEvaluator, gradient_rms
    from lstmlab.errors import CorpusError

    settings = settings or cfg.eval.dynamic
    root = data_dir or cfg.data.data_dir or default_data_dir()
    try:
        corpus = open_corpus(root, cfg.data.corpus)
        train = corpus.tokens("train")
    except CorpusError as exc:
        raise UsageError(
            f"--dynamic needs the model's training corpus {cfg.data.corpus!r} for its gradient "
            f"statistics, and it is not available here ({exc.message})",
            hint=f"run `{prepare_command(cfg.data.corpus)}` (or pass --data-dir), or score without --dynamic",
        ) from None
    if corpus.tokenizer.to_meta() != tokenizer.to_meta():
        raise UsageError(
            f"corpus {cfg.data.corpus!r} in {corpus.path.parent} has another vocabulary than the model",
            hint="point --data-dir at the corpus the model was trained on",
        )
    rms = gradient_rms(
        model,
        train,
        batch_size=settings.ms_batch_size,
        segment_len=settings.segment_len,
        max_tokens=settings.ms_tokens,
        device=device,
        progress=progress,
    )
    return DynamicEvaluator(model, rms, settings)
