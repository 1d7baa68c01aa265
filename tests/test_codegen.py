"""Tests of aigc_helpers.codegen: corpus, indentation tokens, prompts, the syntax check, the test."""

import ast
import io
import math
import tokenize
import warnings

import pytest
import torch

from aigc_helpers import codegen

SOURCE = '''import os


class Queue:
    """A queue.  # not a comment"""

    def __init__(self, items=None):
        """Make a queue."""
        # a comment line
        self.items = list(items or [])   # trailing comment
        self.size = len(self.items)

    def push(self, item):
        """Add an item."""
        if item is None:
            raise ValueError("no None, # please")
        self.items.append(item)


def area(w, h):
    """Width times height."""
    return max(w * h, 0)
'''


def test_vocab_is_fixed():
    assert len(codegen.VOCAB) == 97 and len(set(codegen.VOCAB)) == 97
    assert codegen.code_tokenizer().vocab_size == 97


def test_normalise_maps_onto_the_alphabet():
    text = codegen.normalise("a\tb  \r\n\x0c\nx = 'é' + 'ü'\n")
    assert text == "a       b\n\nx = '?' + '?'\n"
    assert set(text) <= set(codegen.VOCAB)


def test_strip_comments_keeps_the_tree_and_strings():
    stripped = codegen.strip_comments(SOURCE)
    assert ast.dump(ast.parse(stripped)) == ast.dump(ast.parse(SOURCE))
    assert "# not a comment" in stripped and "# please" in stripped          # inside strings: kept
    assert "a comment line" not in stripped and "trailing comment" not in stripped
    assert stripped.count("\n") == SOURCE.count("\n") - 1                    # one comment-only line dropped
    assert "self.items = list(items or [])\n" in stripped                     # no trailing spaces left
    left = [t for t in tokenize.generate_tokens(io.StringIO(stripped).readline) if t.type == tokenize.COMMENT]
    assert left == []
    with pytest.raises(ValueError, match="tokenize"):
        codegen.strip_comments("x = (1,\n")


def test_indent_round_trip_and_counts():
    text = "def f():\n    if x:\n          y = (1,\n                 2)\n"
    model = codegen.compress_indent(text)
    assert model == "def f():\n\tif x:\n\t\t  y = (1,\n\t\t\t\t 2)\n"
    assert codegen.expand_indent(model) == text
    assert codegen.expand_indent(codegen.compress_indent(SOURCE)) == SOURCE


def _write(tmp_path, files):
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
    return tmp_path


def test_corpus_splits_by_file(tmp_path):
    root = _write(tmp_path, {"b": "x = 1\n", "a": "def f():\n    return 2\n", "c": "y = (3)\n"})
    corpus = codegen.python_corpus(train_modules=("b", "a", "missing"), val_modules=("c",), root=root)
    assert list(corpus.train_files) == ["a.py", "b.py"]                         # sorted; missing skipped
    assert list(corpus.val_files) == ["c.py"]
    tok = corpus.data.tokenizer
    assert tok.decode(corpus.data.train) == "def f():\n\treturn 2\n\n\nx = 1\n\n\n"
    assert tok.decode(corpus.data.val) == "y = (3)\n\n\n"
    with pytest.raises(ValueError, match="both"):
        codegen.python_corpus(train_modules=("a",), val_modules=("a",), root=root)


def test_files_come_sorted(tmp_path):
    names = [c for c in "qwertyuiop"]
    root = _write(tmp_path, {n: f"{n} = 1\n" for n in names})
    assert list(codegen.load_python_files(names, root=root)) == [f"{n}.py" for n in sorted(names)]


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="stdlib"):
        codegen.load_python_files(("nothing_here",), root=tmp_path)


def test_stdlib_corpus_is_there():
    files = codegen.load_python_files(codegen.VAL_MODULES)
    assert len(files) >= 8 and all(set(t) <= set(codegen.VOCAB) for t in files.values())


def test_one_line_statements():
    lines = codegen.one_line_statements(SOURCE)
    text = SOURCE.split("\n")
    picked = [text[i - 1].strip() for i in lines]
    assert "self.items = list(items or [])   # trailing comment" not in picked    # ends before the comment
    assert 'raise ValueError("no None, # please")' in picked
    assert "return max(w * h, 0)" in picked and "import os" in picked
    assert not any(p.startswith(("def ", "class ", "if ")) for p in picked)
    assert '"""Make a queue."""' in picked                                        # a docstring is an expression


def test_line_prompts_cut_after_first_paren():
    files = {"q.py": codegen.strip_comments(SOURCE)}
    prompts = codegen.line_prompts(files, context_chars=20)
    prefixes = [p.prefix.strip() for p in prompts]
    assert prefixes == ["self.items = list(", "self.size = len(", 'raise ValueError(', "self.items.append(",
                        "return max("]
    for p in prompts:
        assert len(p.context) == 20
        assert p.context.endswith(codegen.compress_indent(p.prefix))
        assert codegen.check_line(p, p.reference + "\nmore").exact
    assert prompts[-1].reference == "w * h, 0)"
    sub = codegen.line_prompts(files, context_chars=20, n=2, seed=3)
    assert len(sub) == 2 and all(p in prompts for p in sub)
    assert sub == codegen.line_prompts(files, context_chars=20, n=2, seed=3)
    with pytest.raises(ValueError):
        codegen.line_prompts(files, context_chars=20, n=99)


def test_line_prompts_with_odd_indentation():
    files = {"two.py": "def f(x):\n  if x:\n      y = g(x)\n  return h(y, 1)\n"}     # 2 and 6 spaces
    prompts = codegen.line_prompts(files, context_chars=14)
    assert [p.prefix for p in prompts] == ["      y = g(", "  return h("]
    for p in prompts:
        assert p.context.endswith(codegen.compress_indent(p.prefix)) and len(p.context) == 14
    assert prompts[1].context == "x)\n  return h("


def test_check_line():
    p = codegen.LinePrompt("f.py", 1, "    x = f(", "a, b)", "")
    ok = codegen.check_line(p, "a, b)\n    y = 2")
    assert ok.parses and ok.exact and ok.finished and ok.completion == "a, b)"
    other = codegen.check_line(p, "c)\n")
    assert other.parses and not other.exact
    assert not codegen.check_line(p, "a, b\n").parses                 # bracket left open
    assert not codegen.check_line(p, "a, b)").parses                  # the line never ended ...
    assert not codegen.check_line(p, "a, b)").exact                   # ... so it is not exact either
    assert not codegen.check_line(p, "a b)\n").parses                 # not Python
    assert not codegen.check_line(p, "a, b)) + \n").parses


def test_check_line_is_silent_about_odd_but_valid_code():
    p = codegen.LinePrompt("f.py", 1, "    x = f(", "a, b)", "")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        odd = [codegen.check_line(p, "1if a else 2)\n"), codegen.check_line(p, "'\\d')\n")]
    assert all(c.parses for c in odd)                                  # Python accepts both lines ...
    assert caught == []                                                # ... and the judge prints nothing


class _Echo(torch.nn.Module):
    """A fake model whose generate appends fixed ids: tests complete_lines without training."""

    def __init__(self, text):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.ids = torch.tensor(codegen.code_tokenizer().encode(text))

    def generate(self, idx, n, temperature=1.0, generator=None):
        return torch.cat([idx, self.ids[:n].expand(idx.shape[0], -1)], dim=1)


def test_complete_lines_judges_the_first_line():
    tok = codegen.code_tokenizer()
    p = codegen.LinePrompt("f.py", 1, "x = f(", "1)", "ab(")
    q = codegen.LinePrompt("f.py", 2, "y = g(", "2)", "cd(")
    checks = codegen.complete_lines(_Echo("1)\n\tz"), tok, [p, q], 4)
    assert [c.parses for c in checks] == [True, True] and [c.exact for c in checks] == [True, False]
    with pytest.raises(ValueError, match="same length"):
        codegen.complete_lines(_Echo("1)\n"), tok, [p, codegen.LinePrompt("f.py", 3, "f(", ")", "abcd(")], 4)


def test_paired_sign_test_against_binomial():
    a = [1] * 30 + [1] * 9 + [0] * 3 + [0] * 10
    b = [1] * 30 + [0] * 9 + [1] * 3 + [0] * 10
    out = codegen.paired_sign_test(a, b)
    assert (out["wins"], out["losses"]) == (9, 3)
    by_hand = sum(math.comb(12, k) for k in range(9, 13)) / 2 ** 12            # P(X >= 9), X ~ Bin(12, 1/2)
    assert out["p_value"] == pytest.approx(by_hand) and out["p_value"] == pytest.approx(0.0730, abs=1e-4)
    assert out["rate_a"] == pytest.approx(39 / 52) and out["rate_b"] == pytest.approx(33 / 52)
    assert codegen.paired_sign_test([1, 0], [1, 0])["p_value"] == 1.0        # no discordant pairs: no evidence
    assert codegen.paired_sign_test([0, 0, 0], [1, 1, 1])["p_value"] == 1.0  # A never better
    scipy = pytest.importorskip("scipy.stats")
    assert out["p_value"] == pytest.approx(scipy.binomtest(9, 12, 0.5, alternative="greater").pvalue)
    with pytest.raises(ValueError):
        codegen.paired_sign_test([1], [1, 0])


def test_python_gpt_setup_fits_the_vocab():
    config, recipe = codegen.python_gpt_setup()
    assert config.vocab_size == 97 and config.block_size >= 64 and recipe.steps > 0
