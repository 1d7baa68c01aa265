"""Code generation: a character GPT trained on Python source, and a syntax check of what it writes.

The corpus is the Python standard library's own ``.py`` files, which every Python
installation carries, so nothing is downloaded. A fixed, sorted list of module names
(present in Python 3.10 to 3.12) makes the corpus the same on every machine of the same
Python version; other versions have slightly different files, so nothing should depend on
the exact bytes. Whole files go either to training or to validation: a line the model is
tested on was never seen in training, not even as part of a window.

Reading order:

1. :data:`VOCAB`, :func:`normalise` and :func:`strip_comments`: how source becomes a text
   over a fixed alphabet of 97 characters, with one character per level of indentation;
2. :func:`python_corpus`: the files, the split by file, a :class:`~aigc_helpers.data.TextData`;
3. :func:`line_prompts`: held-out lines cut after their first ``(``, to be finished;
4. :func:`check_line` and :func:`complete_lines`: does the finished line parse (``ast.parse``)?
5. :func:`paired_sign_test`: does one model finish lines validly more often than another, or is it noise?
6. :func:`python_gpt_setup` and :func:`python_gpt`: the book's GPT on Python, trained once, then cached.
"""

from __future__ import annotations

import ast
import io
import math
import random
import sysconfig
import tokenize
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .core import budget, get_device, set_seed
from .data import CharTokenizer, TextData
from .gpt import GPT, GPTConfig
from .train import load_or_train
from .zoo import LMRecipe, train_lm

# Modules of the standard library that exist in Python 3.10, 3.11 and 3.12 (none of them is
# deprecated for removal). Files, not packages: one module is one file.
TRAIN_MODULES = (
    "abc", "argparse", "ast", "base64", "bdb", "bisect", "calendar", "cmd", "code", "codeop",
    "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses", "difflib", "enum",
    "filecmp", "fileinput", "fnmatch", "functools", "genericpath", "getopt", "gettext", "glob",
    "gzip", "heapq", "hmac", "inspect", "keyword", "linecache", "numbers", "operator",
    "optparse", "os", "posixpath", "pprint", "queue", "random", "reprlib", "sched", "shlex",
    "shutil", "statistics", "string", "tempfile", "textwrap", "threading", "tokenize",
    "traceback", "types", "warnings", "weakref",
)
VAL_MODULES = (
    "fractions", "ftplib", "ipaddress", "mimetypes", "pstats", "selectors", "socketserver",
    "tarfile", "uuid", "zipimport",
)

# The alphabet: tab, newline and the 95 printable ASCII characters. Fixed, so the tokenizer
# does not depend on which files a Python version ships. The tab is not a tab: it stands for
# one level of indentation, four spaces (see compress_indent).
INDENT = "\t"
VOCAB = INDENT + "\n" + "".join(chr(i) for i in range(32, 127))


def stdlib_dir() -> Path:
    """The folder of the running Python's standard library (``sysconfig.get_paths()["stdlib"]``)."""
    return Path(sysconfig.get_paths()["stdlib"])


def normalise(source: str) -> str:
    """Map source onto :data:`VOCAB`: tabs expanded (to columns of 8, as Python reads them),
    ``\\r\\n`` to ``\\n``, trailing spaces dropped, any other character outside the alphabet
    (non-ASCII letters in strings, form feeds) replaced by ``?``."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.expandtabs(8).rstrip() for line in source.split("\n")]
    allowed = set(VOCAB)
    return "".join(c if c in allowed else "?" for c in "\n".join(lines))


def compress_indent(text: str) -> str:
    """Write each line's leading spaces as one :data:`INDENT` per four spaces (plus the rest).

    A character model spends about a fifth of its predictions on the spaces of Python's
    indentation otherwise. Codex (Chen et al., 2021) added tokens for runs of spaces to
    GPT-3's tokenizer for the same reason. :func:`expand_indent` undoes it exactly for text
    without tabs (which :func:`normalise` guarantees).
    """
    out = []
    for line in text.split("\n"):
        n = len(line) - len(line.lstrip(" "))
        out.append(INDENT * (n // 4) + " " * (n % 4) + line[n:])
    return "\n".join(out)


def expand_indent(text: str) -> str:
    """The inverse of :func:`compress_indent`: each leading :data:`INDENT` becomes four spaces."""
    out = []
    for line in text.split("\n"):
        n = len(line) - len(line.lstrip(INDENT))
        out.append("    " * n + line[n:])
    return "\n".join(out)


def strip_comments(source: str) -> str:
    """Remove ``#`` comments, and the lines that held nothing but a comment.

    Uses :mod:`tokenize`, so a ``#`` inside a string is left alone. The result has the same
    abstract syntax tree as the input (``ast.dump`` is equal). Raises ``ValueError`` if the
    source does not tokenize.
    """
    lines = source.split("\n")
    cuts: dict[int, int] = {}                                      # line number (0-based) -> column of '#'
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                cuts[tok.start[0] - 1] = tok.start[1]
    except (tokenize.TokenError, IndentationError, SyntaxError) as err:
        raise ValueError(f"cannot strip comments from source that does not tokenize: {err}") from err
    out = []
    for i, line in enumerate(lines):
        if i in cuts:
            kept = line[:cuts[i]].rstrip()
            if not kept:                                            # a comment-only line: drop it
                continue
            line = kept
        out.append(line)
    return "\n".join(out)


def code_tokenizer() -> CharTokenizer:
    """A character tokenizer over :data:`VOCAB` (97 tokens)."""
    return CharTokenizer(VOCAB)


def load_python_files(modules, root: str | Path | None = None, comments: bool = False) -> dict[str, str]:
    """Read ``<root>/<module>.py`` for each module name, normalised (see :func:`normalise`).

    ``root`` defaults to :func:`stdlib_dir`. Modules missing from this Python are skipped;
    if none is found, ``FileNotFoundError`` says where it looked. With ``comments=False``
    comments are stripped. Returns ``{file name: text}`` in sorted order.
    """
    root = Path(root) if root is not None else stdlib_dir()
    files = {}
    for name in sorted(set(modules)):
        path = root / f"{name}.py"
        if path.is_file():
            text = normalise(path.read_text(encoding="utf-8", errors="replace"))
            files[path.name] = text if comments else strip_comments(text)
    if not files:
        raise FileNotFoundError(
            f"none of the {len(set(modules))} modules ({', '.join(sorted(set(modules))[:5])}, ...) was found "
            f"as a .py file in {root}; pass root= the folder of a Python standard library "
            "(sysconfig.get_paths()['stdlib'])")
    return files


@dataclass
class CodeCorpus:
    """Python source split by file: ``train_files`` and ``val_files`` map file names to text;
    ``data`` holds the same texts joined, in model text (:func:`compress_indent`) and
    tokenized, ready for a language model."""

    train_files: dict[str, str]
    val_files: dict[str, str]
    data: TextData = field(repr=False)


def join_files(files: dict[str, str]) -> str:
    """The files one after another, each ending with a newline and followed by two blank lines."""
    return "".join(text.rstrip("\n") + "\n\n\n" for text in files.values())


def python_corpus(train_modules=TRAIN_MODULES, val_modules=VAL_MODULES, root=None,
                  comments: bool = False) -> CodeCorpus:
    """Load the training and validation modules and tokenize them with :func:`code_tokenizer`."""
    overlap = set(train_modules) & set(val_modules)
    if overlap:
        raise ValueError(f"modules both in training and validation: {sorted(overlap)}")
    train_files = load_python_files(train_modules, root, comments)
    val_files = load_python_files(val_modules, root, comments)
    tok = code_tokenizer()
    train_text, val_text = compress_indent(join_files(train_files)), compress_indent(join_files(val_files))
    data = TextData(train_text + val_text, tok, tok.encode_tensor(train_text),
                    tok.encode_tensor(val_text))
    return CodeCorpus(train_files, val_files, data)


# --------------------------------------------------------------------------- prompts


_COMPOUND = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try,
             ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef) + tuple(
             getattr(ast, name) for name in ("Match", "TryStar") if hasattr(ast, name))


@dataclass
class LinePrompt:
    """A line to finish. The line is cut right after its first ``(``; ``prefix`` is the line up
    to there (as source, with its indentation), ``reference`` the rest of the real line, and
    ``context`` what the model reads: the file up to the cut, in model text
    (:func:`compress_indent`), its last ``context_chars`` characters."""

    file: str
    line: int            # line number in the file (1-based)
    prefix: str          # "        return Fraction("
    reference: str       # "a.numerator, b)"
    context: str         # model text ending with the compressed prefix


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)                  # character offset of each line
    return starts


def one_line_statements(text: str) -> list[int]:
    """Line numbers (1-based, sorted) of the simple statements that fill a line on their own:
    not compound (``if``, ``def``, ...), starting at the line's indentation, ending at its end."""
    lines = text.split("\n")
    found = set()
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.stmt) or isinstance(node, _COMPOUND) or node.lineno != node.end_lineno:
            continue
        line = lines[node.lineno - 1]
        if node.col_offset == len(line) - len(line.lstrip(" ")) and node.end_col_offset == len(line):
            found.add(node.lineno)
    return sorted(found)


def line_prompts(files: dict[str, str], context_chars: int, n: int | None = None,
                 seed: int = 0) -> list[LinePrompt]:
    """Lines to finish: one-line statements that contain ``(``, cut right after the first one.

    Every prompt's context has exactly ``context_chars`` characters of model text (lines too
    near the start of their file are skipped), so one batch completes them all. ``n`` draws
    that many at random (``seed``) from all of them; the result is sorted by file and line,
    the same on every run with the same files.
    """
    if context_chars <= 0:
        raise ValueError(f"context_chars must be positive, got {context_chars}")
    prompts = []
    for fname, text in files.items():
        lines = text.split("\n")
        model_text = compress_indent(text)
        model_starts = _line_starts(model_text)                    # the same lines, compressed
        for lineno in one_line_statements(text):
            line = lines[lineno - 1]
            cut = line.find("(") + 1
            if cut == 0 or cut == len(line):
                continue
            indent = len(line) - len(line.lstrip(" "))
            end = model_starts[lineno - 1] + indent // 4 + indent % 4 + (cut - indent)   # cut, in model text
            if end < context_chars:
                continue
            prompts.append(LinePrompt(fname, lineno, line[:cut], line[cut:], model_text[end - context_chars:end]))
    if n is not None:
        if not 0 < n <= len(prompts):
            raise ValueError(f"n must be between 1 and the {len(prompts)} lines available, got {n}")
        prompts = random.Random(seed).sample(prompts, n)
    return sorted(prompts, key=lambda p: (p.file, p.line))


@dataclass
class LineCheck:
    """The result of :func:`check_line`."""

    completion: str      # the generated rest of the line (up to the first newline)
    finished: bool       # the model ended the line (wrote a newline) within the limit
    parses: bool         # finished, and prefix + completion parses as a statement
    exact: bool          # the completion is exactly the real rest of the line


def check_line(prompt: LinePrompt, generated: str) -> LineCheck:
    """Judge a model's continuation ``generated`` (source text) of ``prompt.prefix``.

    The completion is ``generated`` up to its first newline. It *parses* when the model
    did end the line and the whole line, ``prefix + completion`` without its indentation,
    is accepted by :func:`ast.parse` as Python: every bracket closed, every string
    terminated, every operator with its operands. Whether it is the *right* code is a
    stricter question, ``exact``: the completion equals the rest of the real line.
    """
    newline = generated.find("\n")
    completion = generated if newline < 0 else generated[:newline]
    finished = newline >= 0
    parses = False
    if finished:
        try:
            with warnings.catch_warnings():                        # Python accepts "1if" or "\d" with a
                warnings.simplefilter("ignore", SyntaxWarning)     # warning; the judge only judges
                warnings.simplefilter("ignore", DeprecationWarning)
                ast.parse((prompt.prefix + completion).strip())
            parses = True
        except (SyntaxError, ValueError):                          # ValueError: null bytes
            pass
    return LineCheck(completion, finished, parses, finished and completion == prompt.reference)


@torch.no_grad()
def complete_lines(model, tokenizer: CharTokenizer, prompts: list[LinePrompt], max_new_tokens: int,
                   temperature: float = 1.0, seed: int = 0) -> list[LineCheck]:
    """Let ``model`` (anything with GPT's ``generate(idx, n, temperature=, generator=)``)
    continue every prompt's context in one batch, then :func:`check_line` each result.
    All contexts must have the same length (as :func:`line_prompts` makes them)."""
    if not prompts:
        raise ValueError("no prompts to complete")
    if len({len(p.context) for p in prompts}) != 1:
        raise ValueError("all contexts must have the same length; make them with one call of line_prompts")
    device = next(model.parameters()).device
    idx = torch.tensor([tokenizer.encode(p.context) for p in prompts], device=device)   # (B, T)
    out = model.generate(idx, max_new_tokens, temperature=temperature,
                         generator=torch.Generator(device=device).manual_seed(seed))  # (B, T + new)
    # Only the first line is judged, and it starts in the middle of a line: it has no
    # indentation to expand (a tab inside a line is whitespace to Python).
    texts = [tokenizer.decode(row[idx.shape[1]:].tolist()) for row in out]
    return [check_line(p, t) for p, t in zip(prompts, texts)]


# --------------------------------------------------------------------------- the model


def python_gpt_setup(vocab_size: int = len(VOCAB)):
    """The config and recipe of the book's Python GPT (bigger with ``AIGC_BUDGET=full``)."""
    config = GPTConfig(vocab_size=vocab_size, block_size=budget(64, 256), n_layer=budget(2, 6),
                       n_head=budget(4, 6), n_embd=budget(96, 384), dropout=budget(0.0, 0.1))
    recipe = LMRecipe(steps=budget(500, 5000), batch_size=budget(24, 64), lr=budget(6e-3, 1e-3),
                      lr_min=budget(6e-4, 1e-4), warmup=budget(50, 200), eval_every=budget(250, 500),
                      eval_batches=budget(10, 20))
    return config, recipe


def python_gpt(corpus: CodeCorpus, device=None, progress: bool = True):
    """A character GPT trained on ``corpus`` (trained once, then loaded from the cache):
    ``(model, info)`` with ``info["result"]`` the training history as a dict."""
    config, recipe = python_gpt_setup(corpus.data.tokenizer.vocab_size)
    device = device or get_device()

    def build() -> GPT:
        set_seed(recipe.seed)
        return GPT(config)

    def fit(model: GPT):
        return train_lm(model, corpus.data, config.block_size, recipe, device=device,
                        desc="GPT on Python", progress=progress)

    key = {"gpt": asdict(config), "recipe": asdict(recipe), "vocab": VOCAB,
           "train_files": sorted(corpus.train_files), "train_chars": len(corpus.data.train)}
    return load_or_train("python-gpt", key, build, fit, device=device)


# --------------------------------------------------------------------------- is the difference real?


def paired_sign_test(a_ok, b_ok) -> dict[str, float]:
    """Is model A right more often than model B on the *same* items? McNemar's exact test.

    ``a_ok`` and ``b_ok`` are booleans, one per item, for the two models. Items on which both
    succeed or both fail say nothing about which is better; only the discordant ones count:
    ``wins`` (A right, B wrong) and ``losses`` (A wrong, B right). If neither model were
    better, each discordant item would be a fair coin, so the one-sided p-value is
    ``P(X >= wins)`` for ``X ~ Binomial(wins + losses, 1/2)``.
    """
    a_ok, b_ok = [bool(x) for x in a_ok], [bool(x) for x in b_ok]
    if len(a_ok) != len(b_ok) or not a_ok:
        raise ValueError(f"need two equally long, non-empty lists of results, got {len(a_ok)} and {len(b_ok)}")
    wins = sum(a and not b for a, b in zip(a_ok, b_ok))
    losses = sum(b and not a for a, b in zip(a_ok, b_ok))
    n = wins + losses
    p_value = sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n if n else 1.0
    return {"rate_a": sum(a_ok) / len(a_ok), "rate_b": sum(b_ok) / len(b_ok), "wins": wins, "losses": losses,
            "p_value": p_value}
