"""Analysis -> a Document (title facts + sections of figures and tables) -> one self-contained
HTML file and one PDF with the same content. Neither renderer knows what a figure shows."""
from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple, Union

import matplotlib
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure as MplFigure
from matplotlib.patches import Rectangle

from . import families
from .analysis import Analysis, Factor
from .figures import FIGURES, PAGE, Figure
from .tables import TABLES, Table, header

Block = Union[Figure, Table]
PNG_DPI = 100  # 1170 px wide pages: sharp on a laptop screen, ~100 KB per figure


@dataclass
class Section:
    """A titled part of the report: an intro sentence and its figures and tables, in order."""

    key: str
    title: str
    intro: str
    blocks: List[Block] = field(default_factory=list)
    part: str = ""  # in a report over several tasks: the task this section belongs to
    head: bool = False  # the first section of a task's part (its title is the task's)


@dataclass
class Document:
    """What both renderers draw, in order."""

    title: str
    facts: List[Tuple[str, str]]
    notes: List[str]
    sections: List[Section]


def blocks(section: str, a: Analysis, *args) -> Iterator[Block]:
    """Every registered figure, then every table, of a section (registration order); a family's
    own ones only for that family's tasks."""
    for sec, fn, family in FIGURES:
        if sec == section and family in (None, a.family):
            yield from fn(a, *args)
    for sec, fn, family in TABLES:
        if sec == section and family in (None, a.family):
            yield from fn(a, *args)


def document(a: Union[Analysis, Sequence[Analysis]]) -> Document:
    """Lay out the report. One task: overview, the family's figures, one section per factor, speed,
    problem runs, fixed settings. Several tasks: those sections once per task, each part headed by
    the task's facts; no figure or table mixes tasks."""
    parts = list(a) if isinstance(a, (list, tuple)) else [a]
    if len(parts) == 1:
        a = parts[0]
        return Document(title=f"Sweep report: {a.sweep.name}", facts=header(a), notes=list(a.sweep.notes),
                        sections=task_sections(a))
    sections: List[Section] = []
    for p in parts:
        head = Section(f"task-{p.task}", f"Task: {p.task} ({p.family})",
                       f"{len(p.runs)} run{'s' if len(p.runs) != 1 else ''}; ranked by {p.metric} ({p.better}).",
                       part=p.task, head=True)
        head.blocks += list(blocks("task", p))
        sections.append(head)
        for s in task_sections(p):
            s.key, s.part = f"{p.task}-{s.key}", p.task
            for b in s.blocks:  # keys are anchors: unique in the page
                b.key = f"{p.task}-{b.key}"
            sections.append(s)
    names = parts[0].sweep.name
    title = f"Sweep report: {names} ({len(parts)} tasks)"
    return Document(title=title, facts=header(parts), notes=list(notes_of(parts)), sections=sections)


def notes_of(parts: Sequence[Analysis]) -> Iterator[str]:
    seen = set()
    for p in parts:
        for n in p.sweep.notes:
            if n not in seen:
                seen.add(n)
                yield n


def task_sections(a: Analysis) -> List[Section]:
    """The sections of one task's runs."""
    sections = [Section("overview", "Overview",
                        "How the configurations compare on the sweep's metric, and how pairs of factors interact."
                        if len(a.factors) > 1 else "")]
    sections[0].blocks += list(blocks("overview", a))
    fam = Section("family", families.title(a), families.intro(a))
    fam.blocks += list(blocks("family", a))
    if fam.blocks:
        sections.append(fam)
    for f in a.factors:
        s = Section(f"factor-{f.column.split(':', 1)[1]}", f"Factor: {f.name}",
                    f"{len(f.levels)} levels: {', '.join(f.levels)}. Each level's colour is the same in every figure.")
        s.blocks += list(blocks("factor", a, f))
        sections.append(s)
    if not a.factors:  # nothing to compare, but the runs' curves and spread are still worth seeing
        everything = Factor(name="all runs", columns=[], column=a.config_column, levels=["all runs"],
                            colors={"all runs": (0.2, 0.4, 0.7)})
        s = Section("runs", "All runs", "No config setting varies between these runs (seeds aside): one "
                    "configuration, so there is nothing to compare.")
        s.blocks += list(blocks("factor", a, everything))
        sections.append(s)
    mon = a.decl.metric(a.decl.monitor)
    speed = Section("speed", "Speed", "Training throughput, the GPU/CPU speedup where both ran, and the time to "
                    f"the task's target values of {'the validation ' + mon.short if mon else 'its metric'}.")
    speed.blocks += list(blocks("speed", a))
    sections.append(speed)
    problems = Section("problems", "Runs that diverged, failed or did not finish", "")
    problems.blocks += list(blocks("problems", a))
    if not problems.blocks:
        problems.intro = "None: every run finished or stopped early by design."
    sections.append(problems)
    setup = Section("setup", "Settings", "")
    setup.blocks += list(blocks("setup", a))
    sections.append(setup)
    return [s for s in sections if s.blocks or s.intro]


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The report's look, applied only while it is drawn (a caller's matplotlib settings are left alone)."""
    import seaborn as sns

    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.9),
          "pdf.fonttype": 42,  # TrueType in the PDF: text stays searchable (pdftotext) and sharp
          "font.family": "DejaVu Sans", "axes.titleweight": "bold", "legend.title_fontsize": 10,
          "svg.fonttype": "none",
          "text.parse_math": False}  # a level "$\\alpha$" or "a_b^c" is text, never mathtext that can fail
    with matplotlib.rc_context(rc):
        yield


# ---------------------------------------------------------------------------------------------
# HTML

CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1240px;padding:24px;color:#222;line-height:1.4}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1.2em;margin:1em 0}
dl.facts dt{font-weight:bold;color:#555} dl.facts dd{margin:0}
.notes{background:#fff6dd;border-left:4px solid #e0b030;padding:.4em 1em;margin:1em 0}
nav ol{columns:2} figure{margin:1em 0 2em} figure img{max-width:100%;height:auto;display:block}
figcaption,.caption{color:#555;font-size:.9em;margin:.3em 0 0}
table{border-collapse:collapse;font-size:.88em;margin:.3em 0} th,td{padding:.25em .7em;text-align:left;vertical-align:top}
th{border-bottom:2px solid #888;background:#f3f3f3} tr:nth-child(even) td{background:#fafafa}
td{border-bottom:1px solid #e4e4e4} .sw{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border:1px solid #0004}
h2.task{font-size:1.5em;background:#eef2f8;border-bottom:3px solid #4a6fa5;padding:.3em .4em;margin-top:2.5em}
h2 .part{color:#4a6fa5;font-weight:normal} nav li.task{font-weight:bold;margin-top:.3em} nav li.sub{margin-left:1.2em}
"""


def png(fig: MplFigure) -> Tuple[str, int, int]:
    """The figure as a base64 PNG (cropped to its content), with its pixel size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI, bbox_inches="tight", pad_inches=0.15, facecolor="white")
    data = buf.getvalue()
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR
    return base64.b64encode(data).decode("ascii"), w, h


def _rgb(c) -> str:
    return "rgb({},{},{})".format(*(int(round(v * 255)) for v in c[:3]))


def html_table(t: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c).strip())}</th>" for c in t.df.columns)
    rows = []
    for i, (_, r) in enumerate(t.df.iterrows()):
        cells = []
        for j, v in enumerate(r):
            sw = ""
            if j == 0 and t.colors and i < len(t.colors) and t.colors[i] is not None:
                sw = f'<span class="sw" style="background:{_rgb(t.colors[i])}"></span>'
            cells.append(f"<td>{sw}{e(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table" id="{e(t.key)}"><h3>{e(t.title)}</h3><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table><p class="caption">{e(t.caption)}</p></div>')


def to_html(doc: Document) -> str:
    """One self-contained page: images inline as base64 PNG, no scripts, no network."""
    e = html.escape
    out = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(doc.title)}</title>'
           f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>',
           f"<header><h1>{e(doc.title)}</h1><dl class=\"facts\">"]
    out += [f"<dt>{e(k)}</dt><dd>{'<br>'.join(map(e, v.split(chr(10))))}</dd>" for k, v in doc.facts]
    out.append("</dl>")
    if doc.notes:
        out.append('<div class="notes"><b>Notes</b><ul>' + "".join(f"<li>{e(n)}</li>" for n in doc.notes) + "</ul></div>")
    out.append("<nav><b>Contents</b><ol>" + "".join(
        f'<li{" class=task" if s.head else " class=sub" if s.part else ""}><a href="#{e(s.key)}">{e(s.title)}</a></li>'
        for s in doc.sections) + "</ol></nav></header>")
    for s in doc.sections:
        if s.head:  # a task's part of a report over several tasks
            out.append(f'<section class="task" id="{e(s.key)}" data-task="{e(s.part)}"><h2 class="task">{e(s.title)}</h2>')
        elif s.part:
            out.append(f'<section id="{e(s.key)}" data-task="{e(s.part)}"><h2><span class="part">{e(s.part)} · </span>'
                       f'{e(s.title)}</h2>')
        else:
            out.append(f'<section id="{e(s.key)}"><h2>{e(s.title)}</h2>')
        if s.intro:
            out.append(f"<p>{e(s.intro)}</p>")
        for b in s.blocks:
            if isinstance(b, Figure):
                data, w, h = png(b.fig)
                out.append(f'<figure id="{e(b.key)}"><h3>{e(b.title)}</h3><img src="data:image/png;base64,{data}" '
                           f'alt="{e(b.title)}" width="{w}" height="{h}"><figcaption>{e(b.caption)}</figcaption></figure>')
            else:
                out.append(html_table(b))
        out.append("</section>")
    out.append("</body></html>\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# PDF: matplotlib's PdfPages (pure Python; vector figures, real text)

MARGIN = 0.45  # inches
BOTTOM = 0.75  # inches kept free at the page bottom (page number)
FONT = 8.0  # table text, points
CHAR_W = 0.6 * FONT / 72  # average DejaVu Sans glyph width in inches (a safe over-estimate)
LINE_H = 1.25 * FONT / 72
ROW_PAD = 0.05


def _text(fig: MplFigure, x: float, y: float, s: str, **kw) -> None:
    """Text at (x, y) in inches from the page's bottom left."""
    fig.text(x / PAGE[0], y / PAGE[1], s, va="top", **kw)


def _cell(fig: MplFigure, x: float, top: float, lines: List[str], **kw) -> None:
    """Table cell text, one baseline per line: va="top" aligns ink, so '64' would sit lower than 'batch_size'."""
    for i, line in enumerate(lines):
        y = top - ROW_PAD - 0.8 * FONT / 72 - i * LINE_H
        fig.text(x / PAGE[0], y / PAGE[1], line, va="baseline", fontsize=FONT, **kw)


def _decorate(fig: MplFigure, title: str, caption: str, subtitle: str = "") -> float:
    """Title (and the section's name) above the plot band, caption right below the plot; returns
    the height (inches from the bottom) below which the page is free."""
    h = PAGE[1]
    _text(fig, MARGIN, h - MARGIN, title, fontsize=15, weight="bold")
    if subtitle:  # one line: the plot band starts right below it
        _text(fig, MARGIN, h - MARGIN - 0.3, textwrap.shorten(subtitle, 175, placeholder=" …"), fontsize=9, color="0.3")
    engine = fig.get_layout_engine()
    y = (engine.get()["rect"][1] if engine is not None else 0.13) * h - 0.05
    if caption:
        lines = textwrap.wrap(caption, 165)
        _text(fig, MARGIN, y, "\n".join(lines), fontsize=9, color="0.25")
        y -= 0.16 * len(lines)
    return y


def _wrap(text: str, width: int) -> List[str]:
    lines: List[str] = []
    for part in str(text).split("\n"):
        lines += textwrap.wrap(part, max(width, 4), break_long_words=True, break_on_hyphens=False) or [""]
    return lines


def _layout_columns(t: Table) -> Tuple[List[int], List[List[List[str]]], List[List[str]]]:
    """Column widths in characters that fit the page, and every cell and header wrapped to them."""
    cols = [str(c).strip() for c in t.df.columns]
    cells = [[str(v) for v in r] for r in t.df.itertuples(index=False)]
    avail = int((PAGE[0] - 2 * MARGIN) / CHAR_W) - 2 * len(cols) - (3 if t.colors else 0)
    # a header wraps (up to 26 characters a line) before it widens its column
    widths = [max(min(len(c), 26), max([1] + [max(map(len, r[j].split("\n"))) for r in cells]))
              for j, c in enumerate(cols)]
    # shrink the widest (free text first) until it fits; down to 14 characters first, then, for a
    # table of many columns (the GPU/CPU speedup table has 14), down to 7 rather than run off the page
    for floor in (14, 7):
        while sum(widths) > avail and max(widths) > floor:
            j = max(range(len(widths)), key=lambda k: widths[k] * (3 if cols[k] in t.wide else 1))
            widths[j] -= 1
    head = [_wrap(c, w) for c, w in zip(cols, widths)]
    body = [[_wrap(v, w) for v, w in zip(r, widths)] for r in cells]
    return widths, body, head


class PdfLayout:
    """Pages in order: a figure starts a page; tables flow after it and after each other over as
    many pages as they need (header repeated), so a short table shares a page."""

    def __init__(self) -> None:
        self.pages: List[MplFigure] = []
        self.contents: List[Tuple[str, int]] = []  # (section title, page number; the title page is 1)
        self.page: MplFigure = None  # the page tables are flowing on, if any
        self.y = 0.0  # its cursor, inches from the page bottom

    def number(self) -> int:
        """The page number of the last page (the title page, not in `pages`, is page 1)."""
        return len(self.pages) + 1

    def figure(self, fig: MplFigure, free: float) -> int:
        """A figure page; a table that fits below its caption (`free` inches) may follow on it."""
        self.pages.append(fig)
        self.page, self.y = fig, free
        return self.number()

    def new_page(self) -> None:
        self.page = MplFigure(figsize=PAGE)
        self.pages.append(self.page)
        self.y = PAGE[1] - MARGIN

    def heading(self, title: str, subtitle: str) -> None:
        top = self.y >= PAGE[1] - MARGIN - 1e-6
        _text(self.page, MARGIN, self.y, title, fontsize=15 if top else 12.5, weight="bold")
        self.y -= 0.3 if top else 0.26
        if subtitle:
            _text(self.page, MARGIN, self.y, textwrap.shorten(subtitle, 175, placeholder=" …"), fontsize=9, color="0.3")
            self.y -= 0.22
        self.y -= 0.08

    def text(self, title: str, body: str) -> int:
        """A section that is only a sentence; returns its page number."""
        if self.page is None or self.y - 0.9 < BOTTOM:
            self.new_page()
        else:
            self.y -= 0.25
        self.heading(title, "")
        at = self.number()
        lines = textwrap.wrap(body, 150)
        _text(self.page, MARGIN, self.y, "\n".join(lines), fontsize=10)
        self.y -= 0.2 * len(lines) + 0.1
        return at

    def table(self, t: Table, subtitle: str) -> int:
        """Flow a table onto the pages; returns the page number it starts on."""
        widths, body, head = _layout_columns(t)
        w = PAGE[0]
        swatch = 0.12 if t.colors else 0.0
        xs = [MARGIN]
        for j, cw in enumerate(widths):
            xs.append(xs[-1] + cw * CHAR_W + 2 * CHAR_W + (swatch if j == 0 else 0.0))
        head_h = max(map(len, head)) * LINE_H + 2 * ROW_PAD
        row_h = [max(map(len, r)) * LINE_H + 2 * ROW_PAD for r in body]
        caption_h = 0.15 + 0.15 * len(textwrap.wrap(t.caption, 165))
        whole = 0.9 + head_h + sum(row_h) + caption_h
        page_h = PAGE[1] - MARGIN - BOTTOM
        # split a table across pages only when it is longer than a page anyway
        room = self.y - BOTTOM if self.page is not None else 0.0
        if room < whole and (whole <= page_h or room < 0.9 + head_h + sum(row_h[:5])):
            self.new_page()
        else:
            self.y -= 0.25
        self.heading(t.title, subtitle)
        at = self.number()
        i = 0
        while True:
            y = self.y
            for j, lines in enumerate(head):
                _cell(self.page, xs[j], y, lines, weight="bold")
            y -= head_h
            self.page.add_artist(Rectangle((MARGIN / w, y / PAGE[1]), (xs[-1] - MARGIN) / w, 0.012 / PAGE[1],
                                           color="0.3", transform=self.page.transFigure))
            start = i
            while i < len(body) and (y - row_h[i] >= BOTTOM or i == start):
                if (i - start) % 2:
                    self.page.add_artist(Rectangle((MARGIN / w, (y - row_h[i]) / PAGE[1]), (xs[-1] - MARGIN) / w,
                                                   row_h[i] / PAGE[1], color="0.95", transform=self.page.transFigure,
                                                   zorder=-1))
                for j, lines in enumerate(body[i]):
                    x = xs[j]
                    if j == 0 and swatch and i < len(t.colors) and t.colors[i] is not None:
                        self.page.add_artist(Rectangle(((x - 0.02) / w, (y - ROW_PAD - 0.1) / PAGE[1]), 0.09 / w,
                                                       0.09 / PAGE[1], color=t.colors[i], transform=self.page.transFigure))
                        x += swatch
                    _cell(self.page, x, y, lines)
                y -= row_h[i]
                i += 1
            self.y = y
            if i >= len(body):
                break
            self.new_page()
            self.heading(t.title + " (continued)", "")
        lines = textwrap.wrap(t.caption, 165)
        if self.y - 0.15 - 0.15 * len(lines) < BOTTOM * 0.6:
            self.new_page()
        _text(self.page, MARGIN, self.y - 0.1, "\n".join(lines), fontsize=8.5, color="0.3")
        self.y -= 0.15 + 0.15 * len(lines)
        return at


def title_pages(doc: Document, contents: Sequence[Tuple[str, int]]) -> List[MplFigure]:
    """The summary: every header fact, the notes, and the contents with page numbers (which count
    the title page as 1 and are shifted here by any further contents pages)."""
    fig = MplFigure(figsize=PAGE)
    h = PAGE[1]
    _text(fig, MARGIN, h - MARGIN, doc.title, fontsize=18, weight="bold")
    y = h - MARGIN - 0.6
    key_w = 1.9
    for k, v in doc.facts:
        lines = _wrap(v, 105)
        _text(fig, MARGIN, y, k, fontsize=9.5, weight="bold", color="0.3")
        _text(fig, MARGIN + key_w, y, "\n".join(lines), fontsize=9.5, linespacing=1.2)
        y -= len(lines) * 0.19 + 0.06
    if doc.notes:
        y -= 0.1
        _text(fig, MARGIN, y, "Notes", fontsize=9.5, weight="bold", color="0.3")
        for n in doc.notes[:6]:
            lines = _wrap(n, 130)
            _text(fig, MARGIN + key_w, y, "\n".join(lines), fontsize=8.5, color="#8a5a00")
            y -= len(lines) * 0.17 + 0.05
        if len(doc.notes) > 6:
            _text(fig, MARGIN + key_w, y, f"… and {len(doc.notes) - 6} more (see the HTML report)", fontsize=8.5,
                  color="#8a5a00")
            y -= 0.2
    y -= 0.15
    # the contents: two columns below the facts, continued on pages of their own when they do not fit
    row_h, col_w = 0.18, 4.6
    per_col = max(1, int((y - 0.6) / row_h))
    full = max(1, int((h - 2 * MARGIN - 0.6) / row_h))
    extra = math.ceil(max(0, len(contents) - 2 * per_col) / (2 * full))
    pages = [fig]
    bold = any(t.startswith(" ") for t, _ in contents)  # a report over several tasks: task titles bold
    start, top, rows = 0, y, per_col
    while True:
        _text(pages[-1], MARGIN, top, "Contents" + (" (continued)" if len(pages) > 1 else ""), fontsize=9.5,
              weight="bold", color="0.3")
        chunk = contents[start:start + 2 * rows]
        for i, (title, page) in enumerate(chunk):
            col, row = divmod(i, rows)
            x = MARGIN + key_w + col * col_w
            sub = 0.25 if title.startswith(" ") else 0.0  # a section of a task's part: indented
            _text(pages[-1], x + sub, top - row * row_h, textwrap.shorten(title, 60 - 3 * bool(sub), placeholder=" …"),
                  fontsize=8.5, weight="bold" if bold and not sub else "normal")
            _text(pages[-1], x + 4.3, top - row * row_h, str(page + extra), fontsize=8.5, ha="right", color="0.4")
        start += len(chunk)
        if start >= len(contents):
            return pages
        pages.append(MplFigure(figsize=PAGE))
        top, rows = h - MARGIN, full


def to_pdf(doc: Document, path: Path, name: str) -> int:
    """Write the PDF (title page with the summary, then every figure and table); returns its page count."""
    lay = PdfLayout()
    for s in doc.sections:
        title = f"{s.part} · {s.title}" if s.part and not s.head else s.title
        entry = s.title if s.head or not s.part else "      " + s.title
        if not s.blocks:  # a section that is only a sentence
            lay.contents.append((entry, lay.text(title, s.intro)))
            continue
        for k, b in enumerate(s.blocks):
            sub = f"{title}. {s.intro}" if k == 0 and s.intro else title
            if isinstance(b, Figure):
                at = lay.figure(b.fig, _decorate(b.fig, b.title, b.caption, sub))
            else:
                at = lay.table(b, sub)
            if k == 0:
                lay.contents.append((entry, at))
    front = title_pages(doc, lay.contents)
    total = len(lay.pages) + len(front)
    with PdfPages(path, metadata={"Title": doc.title, "Creator": "dl2bench reports/build.py"}) as pdf:
        for n, fig in enumerate(front + lay.pages, start=1):
            fig.text(1 - MARGIN / PAGE[0], 0.3 / PAGE[1], f"{name} · page {n} of {total}", fontsize=7.5,
                     ha="right", va="bottom", color="0.45")
            pdf.savefig(fig)
    return total
