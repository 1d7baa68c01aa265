"""Checks of the glossary (book/part7/07_glossary.md) and of the links in Part VII's pages.

Fast and torch-free. Each check is a function that returns a list of problems for a given
glossary file, so that the same checks can be pointed at a scratch copy with planted errors
(``glossary_problems(path)``) as well as at the book's own glossary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
GLOSSARY = BOOK / "part7" / "07_glossary.md"
# The Part VII prose pages whose {doc} links are checked here.
PART7_PAGES = [BOOK / "part7" / name for name in
               ("05_tools_resources.md", "06_faq.md", "07_glossary.md", "08_references.md")]

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
DOC_ROLE = re.compile(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`")


# --------------------------------------------------------------------------- parsing


def parse_glossary(path: Path) -> list[tuple[str, str]]:
    """``(term line, definition)`` for every entry of the ```{glossary} block of ``path``."""
    text = path.read_text(encoding="utf-8")
    block = re.search(r"^```\{glossary\}[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    if block is None:
        raise ValueError(f"{path} has no ```{{glossary}} block")
    entries: list[list[str]] = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.lstrip().startswith(":"):   # blank, or a directive option
            continue
        if line[0].isspace():
            if not entries:
                raise ValueError(f"{path}: a definition line before any term: {line!r}")
            entries[-1][1] = (entries[-1][1] + " " + line.strip()).strip()
        else:
            entries.append([line.strip(), ""])
    return [(term, definition) for term, definition in entries]


def split_term(term: str) -> tuple[str, str]:
    """``"Generative adversarial network (GAN) (生成对抗网络)"`` -> (English part, Chinese part).

    The Chinese part is the last parenthesised group; it is ``""`` when there is none.
    """
    m = re.match(r"^(.*\S)\s*\(([^()]*)\)$", term)
    if m is None:
        return term.strip(), ""
    return m.group(1).strip(), m.group(2).strip()


def english_names(term: str) -> list[str]:
    """The names to look for in the book: the English head without an "(ABBR)", and the ABBR."""
    english, _ = split_term(term)
    abbreviations = re.findall(r"\(([^()]*)\)", english)
    head = re.sub(r"\s*\([^()]*\)", "", english).strip()
    return [head, *abbreviations]


def _sort_key(term: str) -> str:
    return split_term(term)[0].lower()


def book_texts(exclude: Path | None = None) -> dict[Path, str]:
    """The text of every notebook (all cells) and Markdown page of the book, lower-cased."""
    texts = {}
    for path in sorted(BOOK.rglob("*")):
        if "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        if exclude is not None and path.resolve() == exclude.resolve():
            continue
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text(encoding="utf-8"))
            texts[path] = "\n".join("".join(c["source"]) for c in nb["cells"]).lower()
        elif path.suffix == ".md":
            texts[path] = path.read_text(encoding="utf-8").lower()
    return texts


def occurs(name: str, texts: dict[Path, str]) -> bool:
    """``name`` (or its plural with -s/-es) as a whole word or phrase, case-insensitive."""
    pattern = re.compile(r"(?<![\w-])" + re.escape(name.lower()) + r"(?:s|es)?(?![\w])")
    return any(pattern.search(t) for t in texts.values())


# --------------------------------------------------------------------------- checks


def check_sorted(entries) -> list[str]:
    terms = [t for t, _ in entries]
    return [f"{a!r} comes before {b!r}" for a, b in zip(terms, terms[1:]) if _sort_key(a) > _sort_key(b)]


def check_unique(entries) -> list[str]:
    seen, problems = set(), []
    for term, _ in entries:
        key = _sort_key(term)
        if key in seen:
            problems.append(f"duplicate entry {term!r}")
        seen.add(key)
    return problems


def check_entries(entries) -> list[str]:
    problems = []
    for term, definition in entries:
        english, chinese = split_term(term)
        if not chinese or not CJK.search(chinese):
            problems.append(f"{term!r}: no Chinese term in parentheses")
        if not english or CJK.search(english):
            problems.append(f"{term!r}: the English head is missing or not English")
        if len(definition.split()) < 4:
            problems.append(f"{term!r}: the definition is empty or too short")
    return problems


def check_doc_links(pages, folder: Path | None = None) -> list[str]:
    """``{doc}`` targets that are neither a notebook nor a page, resolved from ``folder``
    (default: each page's own folder; a scratch copy passes the glossary's)."""
    problems = []
    for page in pages:
        for target in DOC_ROLE.findall(page.read_text(encoding="utf-8")):
            base = ((folder or page.parent) / target.strip()).resolve()
            if not any(base.with_name(base.name + ext).exists() for ext in (".ipynb", ".md")):
                problems.append(f"{page.name}: {{doc}} target {target!r} does not exist")
    return problems


def check_terms_used(entries, texts) -> list[str]:
    return [f"{term!r} does not occur in the book outside the glossary"
            for term, _ in entries if not any(occurs(n, texts) for n in english_names(term) if n)]


def glossary_problems(path: Path = GLOSSARY) -> list[str]:
    """Every problem of the glossary at ``path`` (the book's, or a scratch copy)."""
    entries = parse_glossary(path)
    texts = book_texts(exclude=GLOSSARY)
    return (check_sorted(entries) + check_unique(entries) + check_entries(entries)
            + check_doc_links([path], GLOSSARY.parent) + check_terms_used(entries, texts))


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def entries():
    return parse_glossary(GLOSSARY)


def test_glossary_size(entries):
    assert 60 <= len(entries) <= 100, len(entries)


def test_sorted_case_insensitively(entries):
    assert check_sorted(entries) == []


def test_no_duplicates(entries):
    assert check_unique(entries) == []


def test_every_entry_has_chinese_term_and_definition(entries):
    assert check_entries(entries) == []


def test_every_entry_names_its_chapter(entries):
    missing = [t for t, d in entries if not DOC_ROLE.search(d)]
    assert missing == []


def test_doc_links_of_part7_pages_exist():
    pages = [p for p in PART7_PAGES if p.exists()]
    assert GLOSSARY in pages
    assert check_doc_links(pages) == []


def test_every_term_occurs_in_the_book(entries):
    assert check_terms_used(entries, book_texts(exclude=GLOSSARY)) == []


def test_checks_can_fail(tmp_path):
    """Plant errors in a copy of the glossary: each check must report its own."""
    text = GLOSSARY.read_text(encoding="utf-8")
    first, second = parse_glossary(GLOSSARY)[:2]
    bad = text.replace(first[0], second[0] + "X", 1)                     # out of order
    bad = bad.replace("```{glossary}\n", "```{glossary}\nZebra crossing (斑马线)\n"
                      "  A stripe pattern on roads, unrelated to this book. Introduced in "
                      "{doc}`../part9/99_nowhere`.\n\nAttention (Attention)\n  \n", 1)
    scratch = tmp_path / "07_glossary.md"
    scratch.write_text(bad, encoding="utf-8")
    problems = "\n".join(glossary_problems(scratch))
    assert "comes before" in problems
    assert "duplicate entry 'Attention (" in problems
    assert "'Attention (Attention)': no Chinese term" in problems
    assert "definition is empty" in problems
    assert "99_nowhere" in problems
    assert "'Zebra crossing (斑马线)' does not occur" in problems
