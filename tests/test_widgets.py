import ipywidgets
import pytest

from aigc_helpers import widgets as aw
from aigc_helpers.widgets import flipbook


def _parts(box):
    slider, shown = box.children
    return slider, shown


def test_flipbook_draws_each_value_once_in_order_and_links_the_slider(monkeypatch):
    links = []
    real_jslink = aw.widgets.jslink
    monkeypatch.setattr(aw.widgets, "jslink", lambda source, target: links.append(real_jslink(source, target)))
    seen = []
    box = flipbook(seen.append, [10, 20, 30], description="step", value=30)
    assert seen == [10, 20, 30]
    slider, stack = _parts(box)
    assert isinstance(stack, ipywidgets.Stack) and len(stack.children) == 3
    assert all(isinstance(page, ipywidgets.Output) for page in stack.children)
    assert [label for label, _ in slider.options] == ["10", "20", "30"]
    assert slider.index == 2 and stack.selected_index == 2 and slider.description == "step"
    assert len(links) == 1                                # linked in the browser, not through Python
    assert links[0].source == (slider, "index") and links[0].target == (stack, "selected_index")
    assert "aigc-flipbook" in box._dom_classes


def test_flipbook_labels_and_default_start():
    box = flipbook(lambda v: None, [0.5, 1.0], label=lambda v: f"T={v}")
    slider, stack = _parts(box)
    assert [label for label, _ in slider.options] == ["T=0.5", "T=1.0"]
    assert slider.index == 0 and stack.selected_index == 0


def test_flipbook_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        flipbook(lambda v: None, [])
    with pytest.raises(ValueError, match="max_pages"):
        flipbook(lambda v: None, range(65))
    with pytest.raises(ValueError, match="same label"):
        flipbook(lambda v: None, [1, 2], label=lambda v: "x")
    with pytest.raises(ValueError, match="not one of the values"):
        flipbook(lambda v: None, [1, 2], value=3)


def test_flipbook_without_stack_switches_pages_from_python(monkeypatch):
    monkeypatch.delattr(aw.widgets, "Stack")             # as with ipywidgets 7
    box = flipbook(lambda v: None, ["a", "b", "c"])
    slider, shown = _parts(box)
    first = shown.children[0]
    slider.index = 2
    assert len(shown.children) == 1 and shown.children[0] is not first
    slider.index = 0
    assert shown.children[0] is first
