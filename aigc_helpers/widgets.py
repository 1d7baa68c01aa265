"""Controls that also work on the book's static web pages.

``ipywidgets.interact`` redraws its output by calling Python each time a control moves,
so on a static page, with no kernel behind it, its controls cannot change anything. When a
control has only a handful of values, :func:`flipbook` draws the output for every value
once, up front, and the slider only chooses which drawing is shown. The browser makes that
choice itself (``ipywidgets.jslink``), so the slider works the same on the static site, in
Jupyter and on Colab. The price is drawing every page in advance, so keep the pages few.

Model code never imports this module: plotting and widgets stay out of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import ipywidgets as widgets
import matplotlib.pyplot as plt


def flipbook(draw: Callable[[object], None], values: Iterable, *, description: str = "",
             value=None, label: Callable[[object], str] = str, max_pages: int = 64) -> widgets.VBox:
    """A slider over ``values`` that shows what ``draw(value)`` drew for the chosen value.

    ``draw`` is called once per value, in order, inside an ``ipywidgets.Output``: the figures
    it makes (``plt.show()`` is called after it, for any figure left open) and the text it
    prints become that value's page. The pages sit in an ``ipywidgets.Stack`` whose
    ``selected_index`` is linked to the slider's ``index`` in the browser. (With ipywidgets 7,
    which has no ``Stack``, Python switches the pages, so the slider needs a kernel there.)

    Args:
        draw: ``draw(value)``, drawing one page.
        values: the slider's values, at least one and at most ``max_pages``.
        description: the slider's name.
        value: the value shown first (default: the first).
        label: how a value is written beside the slider (default ``str``); labels must differ.

    Returns the box holding the slider and the pages; display it, or let a cell end with it.
    """
    values = list(values)
    if not values:
        raise ValueError("flipbook needs at least one value")
    if len(values) > max_pages:
        raise ValueError(f"{len(values)} values would draw {len(values)} pages up front; "
                         f"pass at most max_pages={max_pages} (or raise max_pages)")
    labels = [label(v) for v in values]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two values have the same label: {labels}")
    if value is None:
        start = 0
    else:
        matches = [i for i, v in enumerate(values) if v == value]
        if not matches:
            raise ValueError(f"value {value!r} is not one of the values {labels}")
        start = matches[0]

    pages = []
    for v in values:
        page = widgets.Output()
        with page:
            draw(v)
            plt.show()                       # shows (and closes) any figure draw left open
        pages.append(page)
    slider = widgets.SelectionSlider(options=list(zip(labels, range(len(values)))), index=start,
                                     description=description, continuous_update=True)
    if hasattr(widgets, "Stack"):            # ipywidgets 8: the browser switches pages
        shown = widgets.Stack(pages, selected_index=start)
        widgets.jslink((slider, "index"), (shown, "selected_index"))
    else:                                    # ipywidgets 7 has no Stack: switch them from Python
        shown = widgets.Box([pages[start]])
        slider.observe(lambda change: setattr(shown, "children", [pages[change["new"]]]), names="index")
    box = widgets.VBox([slider, shown])
    box.add_class("aigc-flipbook")
    return box
