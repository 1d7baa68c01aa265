import ipywidgets
import pytest

from aigc_helpers import widgets as aw
from aigc_helpers.widgets import flipbook, flipbook_grid


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


def _links(monkeypatch):
    links = []
    real_jslink = aw.widgets.jslink
    monkeypatch.setattr(aw.widgets, "jslink", lambda source, target: links.append(real_jslink(source, target)))
    return links


def _record_pages(monkeypatch):
    """Which page was drawn for which setting (values, in the controls' order)."""
    pages = {}
    real_page = aw._page

    def page(draw_one, combo):
        pages[combo] = real_page(draw_one, combo)
        return pages[combo]
    monkeypatch.setattr(aw, "_page", page)
    return pages


def _shown_page(box):
    """The page the browser would show: follow each Stack's selected_index down."""
    node = box.children[-1]
    while isinstance(node, ipywidgets.Stack):
        node = node.children[node.selected_index]
    return node


def test_flipbook_grid_draws_every_combination_and_links_each_level(monkeypatch):
    links = _links(monkeypatch)
    pages = _record_pages(monkeypatch)
    seen = []
    box = flipbook_grid(lambda layer, head: seen.append((layer, head)), {"layer": [0, 1], "head": [0, 1, 2]}, value={"head": 2},
                        descriptions={"layer": "which layer"})
    assert seen == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    layer, head, outer = box.children
    assert isinstance(layer, ipywidgets.SelectionSlider) and layer.description == "which layer"
    assert head.description == "head" and head.index == 2 and layer.index == 0
    assert isinstance(outer, ipywidgets.Stack) and len(outer.children) == 2
    assert all(isinstance(inner, ipywidgets.Stack) and len(inner.children) == 3 for inner in outer.children)
    # one link per Stack: the outer one follows the first control, every inner one the second
    assert len(links) == 3
    by_target = {link.target[0].model_id: link for link in links}
    assert by_target[outer.model_id].source == (layer, "index")
    assert all(by_target[inner.model_id].source == (head, "index")
               and by_target[inner.model_id].target == (inner, "selected_index") for inner in outer.children)
    # the page on show is the one drawn for the chosen setting, and follows the controls
    assert _shown_page(box) is pages[(0, 2)]
    outer.selected_index, outer.children[1].selected_index = 1, 0      # what the browser does on a move
    assert _shown_page(box) is pages[(1, 0)]


def test_flipbook_grid_toggle_buttons_for_words_and_flags():
    box = flipbook_grid(lambda text, scaled: None, {"text": ["a", "b"], "scaled": [True, False]},
                        labels={"scaled": lambda v: "on" if v else "off"}, value={"scaled": False})
    text, scaled, _ = box.children
    assert isinstance(text, ipywidgets.ToggleButtons) and isinstance(scaled, ipywidgets.ToggleButtons)
    assert [label for label, _ in scaled.options] == ["on", "off"] and scaled.index == 1
    assert text.style.button_width == ""                       # short labels keep the default width
    long = flipbook_grid(lambda p: None, {"p": ["a sneaker", "the number 4, handwritten"]}).children[0]
    assert long.style.button_width == "auto"                   # a long label is not cut short
    drawn = []
    many = flipbook_grid(lambda w: drawn.append(w), {"w": [f"word{i}" for i in range(13)]}, value={"w": "word5"})
    menu, pages = many.children                                # more than 12 words: a drop-down list
    assert isinstance(menu, ipywidgets.Dropdown) and menu.index == 5 and pages.selected_index == 5
    assert len(pages.children) == 13 and drawn == [f"word{i}" for i in range(13)]


def test_flipbook_grid_bad_input():
    with pytest.raises(ValueError, match="at least one control"):
        flipbook_grid(lambda: None, {})
    with pytest.raises(ValueError, match="has no values"):
        flipbook_grid(lambda a: None, {"a": []})
    with pytest.raises(ValueError, match="max_pages"):
        flipbook_grid(lambda a, b: None, {"a": range(10), "b": range(7)})
    with pytest.raises(ValueError, match="not controls"):
        flipbook_grid(lambda a: None, {"a": [1]}, value={"b": 1})
    with pytest.raises(ValueError, match="not one of the values"):
        flipbook_grid(lambda a: None, {"a": [1, 2]}, value={"a": 3})
    with pytest.raises(ValueError, match="same label"):
        flipbook_grid(lambda a: None, {"a": [1, 2]}, labels={"a": lambda v: "x"})


def test_flipbook_grid_without_stack_switches_pages_from_python(monkeypatch):
    monkeypatch.delattr(aw.widgets, "Stack")
    pages = _record_pages(monkeypatch)
    box = flipbook_grid(lambda a, b: None, {"a": [1, 2], "b": [3, 4, 5]})
    a, b, shown = box.children
    assert shown.children == (pages[(1, 3)],)
    b.index = 2
    assert shown.children == (pages[(1, 5)],)
    a.index = 1
    assert shown.children == (pages[(2, 5)],)


def test_html_bars_heights_labels_and_legend():
    chart = aw.html_bars(["a", "<b>"], {"before": [0.2, 0.8], "after": [0.0, 1.0]}, title="P & Q", top=1.0)
    text = chart.data
    assert "height:20.0%" in text and "height:80.0%" in text        # the back series, scaled to top
    assert "height:0.0%" in text and "height:100.0%" in text         # the front series
    assert text.count("&lt;b&gt;") >= 1 and "P &amp; Q" in text      # labels and title are escaped
    assert "before" in text and "after" in text and "full height: 1;" in text and "line every 0.25" in text
    assert "left:0%;width:100%" in text and "left:25%;width:50%" in text   # the second series sits in front, narrower
    default = aw.html_bars(["x", "y"], {"s": [1.0, 4.0]}).data
    assert "height:25.0%" in default and "height:100.0%" in default  # top defaults to the largest value


def test_html_bars_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        aw.html_bars([], {"s": []})
    with pytest.raises(ValueError, match="2 labels"):
        aw.html_bars(["a", "b"], {"s": [1.0]})
    with pytest.raises(ValueError, match="negative"):
        aw.html_bars(["a"], {"s": [-0.1]})
    with pytest.raises(ValueError, match="non-finite"):
        aw.html_bars(["a"], {"s": [float("nan")]})
    with pytest.raises(ValueError, match="top must be"):
        aw.html_bars(["a"], {"s": [0.0]})
    with pytest.raises(ValueError, match="colours"):
        aw.html_bars(["a"], {"s": [1.0]}, colors=())


def test_flipbook_grid_can_start_at_none():
    box = flipbook_grid(lambda top_k, top_p: None, {"top_k": [3, 10, None], "top_p": [0.5, 1.0]},
                        value={"top_k": None}, labels={"top_k": lambda k: "off" if k is None else str(k)})
    top_k, top_p = box.children[:2]
    assert top_k.index == 2 and top_k.label == "off"       # None given as the start, not read as "not given"
    assert top_p.index == 0                                 # not given: the first value


def test_html_heatmap_png_labels_and_bad_input():
    import base64
    import io
    import re

    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    m = torch.tensor([[0.0, 1.0, 0.5], [0.25, 0.0, 2.0]])
    text = aw.html_heatmap(m, ["a", "b", "<"], ["x", "y"], title="T", vmax=1.0, cell=12).data
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text).group(1))
    img = plt.imread(io.BytesIO(png))
    assert img.shape[:2] == (2, 3)                                 # one pixel per entry
    viridis = plt.get_cmap("viridis")
    assert np.allclose(img[0, 1, :3], viridis(1.0)[:3], atol=1 / 255)     # 1.0 = vmax: the brightest
    assert np.allclose(img[1, 2, :3], viridis(1.0)[:3], atol=1 / 255)     # above vmax: clipped to it
    assert np.allclose(img[0, 0, :3], viridis(0.0)[:3], atol=1 / 255)
    assert "width:36px;height:24px" in text and "&lt;" in text and "to 1 (bright)" in text
    with pytest.raises(ValueError, match="2-D"):
        aw.html_heatmap(np.zeros(3), ["a"] * 3, ["b"])
    with pytest.raises(ValueError, match="3 x labels and 2 y labels"):
        aw.html_heatmap(m, ["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="finite"):
        aw.html_heatmap([[float("inf")]], ["a"], ["b"])
    with pytest.raises(ValueError, match="vmax"):
        aw.html_heatmap([[0.0]], ["a"], ["b"])


def test_html_images_pixels_ranges_captions_and_bad_input():
    import base64
    import io
    import re

    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    grey = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]]])                # (1, H, W), shown from -1 to 1
    rgb = torch.zeros(3, 2, 3)
    rgb[0] = 1.0                                                    # pure red
    text = aw.html_images([grey, rgb], ["x_t <noisy>", "red"], title="A & B", vmin=[-1.0, 0.0],
                          vmax=[1.0, 1.0], scale=10).data
    pngs = [plt.imread(io.BytesIO(base64.b64decode(m)))
            for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)]
    assert [p.shape[:2] for p in pngs] == [(2, 2), (2, 3)]           # one pixel per image pixel
    assert np.allclose(pngs[0][0, 0, :3], 0.0, atol=1 / 255)         # vmin: black
    assert np.allclose(pngs[0][0, 1, :3], 0.5, atol=1 / 255)         # halfway: mid grey
    assert np.allclose(pngs[0][1, 1, :3], 1.0, atol=1 / 255)         # above vmax: clipped to white
    assert np.allclose(pngs[1][0, 0, :3], [1.0, 0.0, 0.0], atol=1 / 255)
    assert "width:20px;height:20px" in text and "width:30px;height:20px" in text
    assert "x_t &lt;noisy&gt;" in text and "A &amp; B" in text
    batch = aw.html_images(torch.rand(4, 1, 8, 8)).data              # a batch tensor, no captions
    assert batch.count("<img") == 4
    with pytest.raises(ValueError, match="at least one"):
        aw.html_images([])
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        aw.html_images([grey, grey], ["a"])
    with pytest.raises(ValueError, match="one per image"):
        aw.html_images([grey, grey], vmin=[0.0])
    with pytest.raises(ValueError, match="shape"):
        aw.html_images([np.zeros((2, 2, 2, 2))])
    with pytest.raises(ValueError, match="non-finite"):
        aw.html_images([np.full((2, 2), np.nan)])
    with pytest.raises(ValueError, match="must be above"):
        aw.html_images([grey], vmin=1.0, vmax=1.0)


def test_html_stacked_bar_widths_marks_legend_and_bad_input():
    import re

    text = aw.html_stacked_bar({"weights": 10.0, "gradients": 20.0, "Adam <state>": 30.0}, unit="GB",
                               marks={"80 GB GPU": 80.0, "beyond": 500.0}, top=100.0, width=500,
                               title="A & B").data
    lefts = [float(x) for x in re.findall(r"top:4px;height:22px;left:([0-9.]+)px", text)]
    widths = [float(x) for x in re.findall(r"top:4px;height:22px;left:[0-9.]+px;width:([0-9.]+)px", text)]
    assert lefts == [0.0, 50.0, 150.0] and widths == [50.0, 100.0, 150.0]   # laid end to end, 5 px per GB
    assert "left:400.0px;border-left:1px dotted" in text                   # the 80 GB mark
    assert "beyond" not in text                                             # a mark past the top is left out
    assert "Adam &lt;state&gt;: 30 GB" in text and "A &amp; B" in text and "0 to 100 GB" in text
    default = aw.html_stacked_bar({"a": 1.0}, marks={"m": 2.0}).data        # top: 1.1 x the largest mark
    assert "0 to 2.2" in default
    crowded = aw.html_stacked_bar({"a": 2800.0}, marks={"16 GB": 16, "40 GB": 40, "80 GB": 80}, unit="GB").data
    assert crowded.count("dotted") == 3 and crowded.count(">16 GB<") == 1     # every line, but only the
    assert ">40 GB<" not in crowded and ">80 GB<" not in crowded               # labels that have room
    assert "a: 2,800 GB" in crowded and "0 to 3,080 GB" in crowded             # no exponents
    cut = aw.html_stacked_bar({"a": 50.0, "b": 100.0}, top=100.0, width=100).data
    assert re.findall(r"left:([0-9.]+)px;width:([0-9.]+)px", cut) == [("0.0", "50.0"), ("50.0", "50.0")]
    with pytest.raises(ValueError, match="at least one part"):
        aw.html_stacked_bar({})
    with pytest.raises(ValueError, match=">= 0"):
        aw.html_stacked_bar({"a": -1.0})
    with pytest.raises(ValueError, match="colours"):
        aw.html_stacked_bar({str(i): 1.0 for i in range(6)})
    with pytest.raises(ValueError, match="top"):
        aw.html_stacked_bar({"a": 0.0})


def test_shade_word_grid_prompts_results_and_pages():
    import torch

    from aigc_helpers.text2image import Captioner

    seen = []

    def sample(prompts, scale):                  # brightness from the shade word, one blob per image
        seen.append((list(prompts), scale))
        level = [0.3 if "dark" in p else 0.9 if "light" in p else 0.6 for p in prompts]
        out = torch.zeros(len(prompts) * 2, 1, 28, 28)
        out[:, :, 8:20, 8:20] = torch.tensor(level).repeat_interleave(2)[:, None, None, None]
        return out

    class Judge:
        classes = [str(k) for k in range(10)]

        def predict(self, x):
            return torch.arange(len(x)) // 6     # images 6k..6k+5 (garment k's three prompts) "look like" k

    box, results = aw.shade_word_grid(sample, Judge(), scales=(0.0, 2.0), per_prompt=2, start_scale=2.0)
    assert [s for _, s in seen] == [0.0, 2.0] and len(seen[0][0]) == 30
    assert seen[0][0][:3] == [Captioner.phrase(0), Captioner.phrase(0, "dark"), Captioner.phrase(0, "light")]
    images, classes, shades = results[2.0]
    assert images.shape == (10, 3, 2, 1, 28, 28) and classes.shape == shades.shape == (10, 3, 2)
    assert torch.equal(classes, torch.arange(10)[:, None, None].expand(10, 3, 2))
    assert (shades[:, 1] < shades[:, 0]).all() and (shades[:, 0] < shades[:, 2]).all()
    garment, shade_word, scale, _ = box.children
    assert garment.index == 7 and scale.index == 1          # "sneaker", guidance 2
    with pytest.raises(ValueError, match="60 images|for 30 prompts"):
        aw.shade_word_grid(lambda prompts, s: torch.zeros(5, 1, 28, 28), Judge(), per_prompt=2)
