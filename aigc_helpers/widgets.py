"""Controls that also work on the book's static web pages.

``ipywidgets.interact`` redraws its output by calling Python each time a control moves,
so on a static page, with no kernel behind it, its controls cannot change anything. When the
controls have only a handful of values, :func:`flipbook` (one slider) and
:func:`flipbook_grid` (several controls) draw the output for every setting once, up front,
and the controls only choose which drawing is shown. The browser makes that choice itself
(``ipywidgets.jslink``), so the controls work the same on the static site, in Jupyter and on
Colab. The price is drawing every page in advance, so keep the pages few, or cheap:
:func:`html_bars`, :func:`html_heatmap`, :func:`html_images` and :func:`html_stacked_bar` draw a
bar chart, a heat map, a row of small images and one bar split into parts in HTML, which cost
next to nothing to make.

Model code never imports this module: plotting and widgets stay out of it.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, display


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
    _check_pages(len(values), max_pages)
    control = _control(description, values, label, value, value is not None, slider=True)
    return _assemble([control], [values], lambda combo: draw(combo[0]))


def flipbook_grid(draw: Callable[..., None], controls: Mapping[str, Iterable], *,
                  value: Mapping[str, object] | None = None,
                  labels: Mapping[str, Callable[[object], str]] | None = None,
                  descriptions: Mapping[str, str] | None = None, max_pages: int = 64) -> widgets.VBox:
    """Several controls over pages drawn in advance: one page per combination of their values.

    ``controls`` maps each keyword of ``draw`` to its values, for example
    ``{"layer": [0, 1], "head": [0, 1, 2, 3]}``, and ``draw(layer=..., head=...)`` is called
    once per combination (8 pages here), in the order of ``itertools.product``. A control
    whose values are all strings or booleans is a row of toggle buttons (a drop-down list when
    there are more than 12), any other a slider.

    The pages are nested ``ipywidgets.Stack`` s, one level per control, and each level's
    ``selected_index`` is linked in the browser to its control's ``index``, so the controls
    work on a static page like :func:`flipbook`'s slider.

    Args:
        draw: ``draw(**setting)``, drawing one page.
        controls: keyword -> values; every control needs at least one value and the number
            of combinations may not pass ``max_pages``.
        value: keyword -> the value shown first (default: each control's first); it may be
            ``None`` when ``None`` is one of the values.
        labels: keyword -> how that control's values are written (default ``str``).
        descriptions: keyword -> the control's name on the page (default: the keyword).

    Returns the box holding the controls and the pages.
    """
    names = list(controls)
    if not names:
        raise ValueError("flipbook_grid needs at least one control")
    value, labels, descriptions = dict(value or {}), dict(labels or {}), dict(descriptions or {})
    for what, given in (("value", value), ("labels", labels), ("descriptions", descriptions)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"{what} names {unknown}, which are not controls: {names}")
    columns = [list(controls[n]) for n in names]
    for n, vals in zip(names, columns):
        if not vals:
            raise ValueError(f"control {n!r} has no values")
    n_pages = 1
    for vals in columns:
        n_pages *= len(vals)
    _check_pages(n_pages, max_pages)
    built = [_control(descriptions.get(n, n), vals, labels.get(n, str), value.get(n), n in value,
                      slider=not all(isinstance(v, (str, bool)) for v in vals))
             for n, vals in zip(names, columns)]
    return _assemble(built, columns, lambda combo: draw(**dict(zip(names, combo))))


def html_bars(labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str = "",
              top: float | None = None, colors: Sequence[str] = ("#c8c8c8", "#1f77b4", "#ff7f0e"),
              height: int = 90) -> HTML:
    """A small bar chart written as HTML, for pages that must be drawn by the dozen.

    A matplotlib figure costs 0.2-0.4 s to render on a 2-core CPU; HTML costs microseconds,
    and the browser draws it. ``series`` maps a legend name to one value per label. The
    series are drawn over each other, each narrower than the one before: the first is the
    wide bar at the back (a "before"), the next ones sit in front of it (an "after").

    Args:
        labels: one label per bar position, written under it.
        series: name -> values, one per label, all >= 0; at most ``len(colors)`` series.
        title: a line above the bars.
        top: the value of the chart's full height (default: the largest value).
        colors: the series' colours, in order.
        height: the height of the bars' area, in pixels.

    Returns an ``IPython.display.HTML``; display it, or let a cell end with it.
    """
    labels = [str(label) for label in labels]
    if not labels or not series:
        raise ValueError("html_bars needs at least one label and one series")
    if len(series) > len(colors):
        raise ValueError(f"{len(series)} series but only {len(colors)} colours; pass more colors")
    values = {name: [float(v) for v in vals] for name, vals in series.items()}
    for name, vals in values.items():
        if len(vals) != len(labels):
            raise ValueError(f"series {name!r} has {len(vals)} values for {len(labels)} labels")
        if any(not math.isfinite(v) or v < 0 for v in vals):
            raise ValueError(f"series {name!r} has a negative or non-finite value; bars start at 0")
    top = max(max(vals) for vals in values.values()) if top is None else float(top)
    if not top > 0:
        raise ValueError(f"top must be > 0, got {top}")
    n = len(values)

    def bar(i: int) -> str:
        tip = html.escape(f"{labels[i]}: " + ", ".join(f"{name} {vals[i]:.3f}" for name, vals in values.items()))
        layers = "".join(
            f'<div style="position:absolute;bottom:0;left:{50 * k / n:.0f}%;width:{100 - 100 * k / n:.0f}%;'
            f'height:{100 * min(vals[i], top) / top:.1f}%;background:{colors[k]}"></div>'
            for k, vals in enumerate(values.values()))
        return (f'<div title="{tip}" style="flex:1;display:flex;flex-direction:column;align-items:stretch;'
                f'min-width:14px;max-width:34px;margin:0 1px">'
                f'<div style="position:relative;height:{height}px">{layers}</div>'
                f'<div style="text-align:center;font-family:monospace">{html.escape(labels[i])}</div></div>')

    legend = " ".join(f'<span style="display:inline-block;width:10px;height:10px;background:{c};'
                      f'margin:0 3px 0 10px"></span>{html.escape(name)}' for name, c in zip(values, colors))
    return HTML(f'<div class="aigc-bars" style="font-size:12px;line-height:1.4;max-width:760px">'
                f'<div style="font-weight:bold">{html.escape(title)}</div>'
                f'<div style="display:flex;border-bottom:1px solid #888;background:repeating-linear-gradient('
                f'to top,transparent 0,transparent calc(25% - 1px),#e4e4e4 calc(25% - 1px),#e4e4e4 25%)">'
                + "".join(bar(i) for i in range(len(labels))) +
                f'</div><div>{legend} <span style="color:#666;margin-left:10px">'
                f'(full height: {top:g}; a grey line every {top / 4:g})</span></div></div>')


def html_heatmap(values, xlabels: Sequence[str], ylabels: Sequence[str], *, title: str = "",
                 xlabel: str = "", ylabel: str = "", cmap: str = "viridis", vmax: float | None = None,
                 cell: int = 10) -> HTML:
    """A labelled heat map written as HTML, for pages that must be drawn by the dozen.

    The matrix becomes a PNG with one pixel per entry, which the browser enlarges to
    ``cell`` pixels without smoothing; the labels are text beside it. That takes a few
    milliseconds where a labelled matplotlib figure of 60 x 60 takes about a second.
    Labels should be short (a character or two): each gets ``cell`` pixels.

    Args:
        values: a 2-D array (or tensor) of finite numbers, rows down and columns across.
        xlabels, ylabels: one label per column and per row.
        title, xlabel, ylabel: text above, below and to the left.
        cmap: a matplotlib colour map; colours run from 0 to ``vmax``.
        vmax: the value of the brightest colour (default: the largest value).
        cell: the size of one entry on the page, in pixels.

    Returns an ``IPython.display.HTML``.
    """
    a = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"html_heatmap needs a non-empty 2-D matrix, got shape {a.shape}")
    rows, cols = a.shape
    if len(xlabels) != cols or len(ylabels) != rows:
        raise ValueError(f"a {rows} x {cols} matrix needs {cols} x labels and {rows} y labels, "
                         f"got {len(xlabels)} and {len(ylabels)}")
    if not np.isfinite(a).all():
        raise ValueError("html_heatmap needs finite values")
    vmax = float(a.max()) if vmax is None else float(vmax)
    if not vmax > 0:
        raise ValueError(f"vmax must be > 0, got {vmax}")
    png = io.BytesIO()
    plt.imsave(png, a, cmap=cmap, vmin=0, vmax=vmax, format="png")
    src = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    tick = f"display:inline-block;width:{cell}px;height:{cell}px;line-height:{cell}px;text-align:center"
    ys = "".join(f'<div style="height:{cell}px;line-height:{cell}px;text-align:right;padding-right:3px">'
                 f'{html.escape(str(t))}</div>' for t in ylabels)
    xs = "".join(f'<span style="{tick}">{html.escape(str(t))}</span>' for t in xlabels)
    return HTML(f'<div class="aigc-heatmap" style="font-size:{max(cell - 1, 7)}px;font-family:monospace">'
                f'<div style="font:bold 12px sans-serif;margin-bottom:4px">{html.escape(title)}</div>'
                f'<div style="display:flex;align-items:flex-start">'
                f'<div style="writing-mode:vertical-rl;transform:rotate(180deg);align-self:center;'
                f'font:12px sans-serif;margin-right:4px">{html.escape(ylabel)}</div>'
                f'<div>{ys}</div><div><img src="{src}" alt="{html.escape(title)}" '
                f'style="width:{cols * cell}px;height:{rows * cell}px;image-rendering:pixelated;display:block">'
                f'<div style="white-space:nowrap">{xs}</div>'
                f'<div style="font:12px sans-serif;text-align:center">{html.escape(xlabel)}</div></div></div>'
                f'<div style="font:11px sans-serif;color:#666">colours from 0 (dark) to {vmax:.3g} (bright), '
                f'colour map {html.escape(cmap)}</div></div>')


def html_images(images, captions: Sequence[str] | None = None, *, title: str = "",
                vmin: float | Sequence[float] = 0.0, vmax: float | Sequence[float] = 1.0,
                cmap: str = "gray", scale: int = 6) -> HTML:
    """A row of small images written as HTML, for pages that must be drawn by the dozen.

    Each image becomes a PNG with one pixel per image pixel, which the browser enlarges
    ``scale`` times without smoothing; the captions are text under them. A row of five
    8 x 8 digits takes about 2 ms, where a matplotlib figure of them takes 0.15-0.4 s on a
    2-core CPU.

    Args:
        images: a sequence of images, or a batch tensor ``(N, C, H, W)``. An image is
            ``(H, W)``, ``(1, H, W)`` (grey, coloured with ``cmap`` from ``vmin`` to ``vmax``)
            or ``(3, H, W)`` (RGB, clipped to ``vmin``..``vmax``).
        captions: one line of text under each image (default: none).
        title: a line above the row.
        vmin, vmax: the values of black and white; one number for all images, or one per image.
        cmap: the colour map of the grey images.
        scale: screen pixels per image pixel.

    Returns an ``IPython.display.HTML``.
    """
    arrays = [np.asarray(im.detach().cpu() if hasattr(im, "detach") else im, dtype=float) for im in images]
    if not arrays:
        raise ValueError("html_images needs at least one image")
    n = len(arrays)
    captions = [""] * n if captions is None else [str(c) for c in captions]
    if len(captions) != n:
        raise ValueError(f"{n} images but {len(captions)} captions")
    lows = [float(vmin)] * n if np.ndim(vmin) == 0 else [float(v) for v in vmin]
    highs = [float(vmax)] * n if np.ndim(vmax) == 0 else [float(v) for v in vmax]
    if len(lows) != n or len(highs) != n:
        raise ValueError(f"vmin and vmax need one value, or one per image ({n})")
    blocks = []
    for k, (a, lo, hi, caption) in enumerate(zip(arrays, lows, highs, captions)):
        if a.ndim == 3 and a.shape[0] in (1, 3):
            a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
        if a.ndim not in (2, 3) or a.size == 0:
            raise ValueError(f"image {k} has shape {a.shape}; want (H, W), (1, H, W) or (3, H, W)")
        if not np.isfinite(a).all():
            raise ValueError(f"image {k} has non-finite values")
        if not hi > lo:
            raise ValueError(f"image {k}: vmax ({hi}) must be above vmin ({lo})")
        png = io.BytesIO()
        if a.ndim == 2:
            plt.imsave(png, a, cmap=cmap, vmin=lo, vmax=hi, format="png")
        else:
            plt.imsave(png, np.clip((a - lo) / (hi - lo), 0.0, 1.0), format="png")
        src = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
        h, w = a.shape[:2]
        blocks.append(f'<figure style="margin:0 8px 4px 0;text-align:center">'
                      f'<img src="{src}" alt="{html.escape(caption)}" style="width:{w * scale}px;height:{h * scale}px;'
                      f'image-rendering:pixelated;display:block;border:1px solid #ccc">'
                      f'<figcaption style="max-width:{max(w * scale, 60)}px">{html.escape(caption)}</figcaption></figure>')
    return HTML(f'<div class="aigc-images" style="font-size:12px;line-height:1.3">'
                f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>'
                f'<div style="display:flex;flex-wrap:wrap;align-items:flex-start">{"".join(blocks)}</div></div>')


def html_stacked_bar(parts: Mapping[str, float], *, title: str = "", unit: str = "",
                     marks: Mapping[str, float] | None = None, top: float | None = None,
                     colors: Sequence[str] = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"),
                     width: int = 600) -> HTML:
    """One horizontal bar made of coloured parts, with marks to compare it with, as HTML.

    For pages that must be drawn by the hundred: a memory budget split into its parts
    against the sizes of common GPUs, say. The parts are laid end to end from the left;
    each mark is a dotted vertical line with its label under it.

    Args:
        parts: name -> value (>= 0), in the order drawn; the legend gives each value.
        title: a line above the bar.
        unit: written after the values in the legend and on the scale.
        marks: label -> position of a dotted line (default: none).
        top: the value at the bar's right end (default: 1.1 x the largest of the total and
            the marks). Parts and marks beyond it are cut off at the end.
        colors: one colour per part, in order.
        width: the bar's full width on the page, in pixels.

    Returns an ``IPython.display.HTML``.
    """
    items = [(str(k), float(v)) for k, v in parts.items()]
    marks = {str(k): float(v) for k, v in (marks or {}).items()}
    if not items:
        raise ValueError("html_stacked_bar needs at least one part")
    if len(items) > len(colors):
        raise ValueError(f"{len(items)} parts but only {len(colors)} colours")
    if any(not (math.isfinite(v) and v >= 0) for _, v in items + list(marks.items())):
        raise ValueError("parts and marks must be finite numbers >= 0")
    total = sum(v for _, v in items)
    top = 1.1 * max([total, *marks.values()]) if top is None else float(top)
    if not top > 0:
        raise ValueError(f"top must be > 0, got {top}")
    px = lambda v: round(min(v, top) / top * width, 1)  # noqa: E731
    bars, left = [], 0.0
    for (name, v), color in zip(items, colors):
        bars.append(f'<div title="{html.escape(name)}" style="position:absolute;top:4px;height:22px;'
                    f'left:{px(left)}px;width:{px(left + v) - px(left)}px;background:{color}"></div>')
        left += v
    last_label = -math.inf                      # where the last mark's label went, so that labels do not overlap
    for label, v in sorted(marks.items(), key=lambda kv: kv[1]):
        if v <= top:
            bars.append(f'<div style="position:absolute;top:0;height:30px;left:{px(v)}px;'
                        f'border-left:1px dotted #000"></div>')
            if px(v) - last_label >= 6 * len(label) + 8:
                bars.append(f'<div style="position:absolute;top:30px;left:{px(v) + 2}px;font-size:10px;'
                            f'white-space:nowrap">{html.escape(label)}</div>')
                last_label = px(v)
    legend = "".join(f'<span style="margin-right:14px;white-space:nowrap"><span style="display:inline-block;'
                     f'width:10px;height:10px;background:{c};margin-right:4px"></span>{html.escape(n)}: '
                     f'{_number(v)} {html.escape(unit)}</span>' for (n, v), c in zip(items, colors))
    return HTML(f'<div class="aigc-stacked" style="font-size:12px;line-height:1.4">'
                f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>'
                f'<div style="position:relative;width:{width}px;height:46px;border-left:1px solid #888;'
                f'border-right:1px solid #ddd">{"".join(bars)}</div>'
                f'<div style="font-size:11px;color:#666">scale: 0 to {_number(top)} {html.escape(unit)}</div>'
                f'<div>{legend}</div></div>')


def shade_word_grid(sample: Callable[[list[str], float], "torch.Tensor"], judge, *,
                    scales: Sequence[float] = (0.0, 1.0, 3.0, 5.0), per_prompt: int = 4,
                    start: str = "sneaker", start_scale: float = 3.0) -> tuple[widgets.VBox, dict]:
    """The Fashion-MNIST text-to-image playground: garment x shade word x guidance, drawn in advance.

    The prompts are ``Captioner.phrase(k, shade_word)`` for the ten garments and the shade
    words none, "dark" and "light" (30 prompts, garment-major). For each guidance scale,
    ``sample(prompts, scale)`` must return ``per_prompt`` images per prompt, prompt after
    prompt: ``(30 * per_prompt, 1, H, W)`` in [0, 1]. One page per setting shows a
    prompt's images, each captioned with the garment the judge sees and its shade.

    Returns ``(box, results)``: the controls and pages, and ``results[scale] = (images,
    judged classes, shades)`` shaped ``(10, 3, per_prompt, ...)``, for the chapter's checks.
    """
    from .text2image import FASHION_NOUNS, Captioner, shade    # model code, which never imports this module

    garments = [nouns[0] for nouns in FASHION_NOUNS]            # one name per class
    shade_words = ["(none)", "dark", "light"]
    prompts = [Captioner.phrase(k, None if w == "(none)" else w) for k in range(10) for w in shade_words]
    results = {}
    for s in scales:
        out = sample(prompts, s).cpu()
        if out.shape[0] != len(prompts) * per_prompt:
            raise ValueError(f"sample returned {out.shape[0]} images for {len(prompts)} prompts x {per_prompt}")
        grid = (10, 3, per_prompt)
        results[s] = (out.view(*grid, *out.shape[1:]), judge.predict(out).view(grid), shade(out).view(grid))

    def page(garment, shade_word, guidance_scale):
        k, w = garments.index(garment), shade_words.index(shade_word)
        images, classes, shades = (t[k, w] for t in results[guidance_scale])
        hits = (classes == k).sum().item()
        captions = [f"{judge.classes[c]} · {v:.2f}" for c, v in zip(classes.tolist(), shades.tolist())]
        title = (f'"{prompts[3 * k + w]}", guidance scale {guidance_scale:g}: the judge agrees with the prompt '
                 f"on {hits} of {per_prompt}; mean shade {shades.mean():.2f}")
        display(html_images(images, captions, scale=4, title=title))

    box = flipbook_grid(page, {"garment": garments, "shade_word": shade_words, "guidance_scale": list(scales)},
                        value={"garment": start, "guidance_scale": start_scale}, max_pages=30 * len(scales),
                        descriptions={"shade_word": "shade", "guidance_scale": "guidance"})
    return box, results


def _number(v: float) -> str:
    """Three significant digits, without an exponent for the thousands: 0.0974, 18.7, 2,800."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


_SHORT_LABEL = 14                            # characters that fit a toggle button of the default width
_MANY_BUTTONS = 12                           # more words than this make a drop-down list, not buttons


def _check_pages(n_pages: int, max_pages: int) -> None:
    if n_pages > max_pages:
        raise ValueError(f"these values would draw {n_pages} pages up front; "
                         f"pass at most max_pages={max_pages} (or raise max_pages)")


def _control(description: str, values: list, label: Callable[[object], str], value, given: bool,
             slider: bool):
    """A slider (or toggle buttons) whose options are ``(label, position)`` pairs.

    It starts at ``value`` when ``given`` (``value`` may then be ``None``, as in "no filter"),
    else at the first value.
    """
    names = [label(v) for v in values]
    if len(set(names)) != len(names):
        raise ValueError(f"two values of {description or 'the control'!r} have the same label: {names}")
    start = 0
    if given:
        matches = [i for i, v in enumerate(values) if v == value]
        if not matches:
            raise ValueError(f"value {value!r} is not one of the values {names}")
        start = matches[0]
    options = list(zip(names, range(len(values))))
    if slider:
        return widgets.SelectionSlider(options=options, index=start, description=description,
                                       continuous_update=True)
    if len(values) > _MANY_BUTTONS:          # a wall of buttons is hard to scan: a drop-down list instead
        return widgets.Dropdown(options=options, index=start, description=description)
    # a toggle button is about 150 pixels wide and cuts a longer label short: size those to their text
    style = {"button_width": "auto"} if max(len(n) for n in names) > _SHORT_LABEL else {}
    return widgets.ToggleButtons(options=options, index=start, description=description, style=style)


def _page(draw_one: Callable[[tuple], None], combo: tuple) -> widgets.Output:
    page = widgets.Output()
    with page:
        draw_one(combo)
        plt.show()                           # shows (and closes) any figure draw left open
    return page


def _assemble(controls: list, columns: list[list], draw_one: Callable[[tuple], None]) -> widgets.VBox:
    """Draw every page, in ``itertools.product`` order, and wire the controls to them."""
    sizes = [len(c) for c in columns]
    pages = {combo: _page(draw_one, tuple(col[i] for col, i in zip(columns, combo)))
             for combo in itertools.product(*(range(n) for n in sizes))}

    if hasattr(widgets, "Stack"):            # ipywidgets 8: the browser switches pages
        def nest(prefix: tuple) -> widgets.Widget:
            level = len(prefix)
            if level == len(controls):
                return pages[prefix]
            stack = widgets.Stack([nest(prefix + (i,)) for i in range(sizes[level])],
                                  selected_index=controls[level].index)
            widgets.jslink((controls[level], "index"), (stack, "selected_index"))
            return stack
        shown = nest(())
    else:                                    # ipywidgets 7 has no Stack: switch them from Python
        def current() -> widgets.Output:
            return pages[tuple(c.index for c in controls)]
        shown = widgets.Box([current()])
        for c in controls:
            c.observe(lambda change: setattr(shown, "children", [current()]), names="index")
    box = widgets.VBox([*controls, shown])
    box.add_class("aigc-flipbook")
    return box
