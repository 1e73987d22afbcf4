"""HTML for the dashboard: a page frame, tables, and the rate chart as inline SVG.

Why it is shaped this way:
- Server-rendered HTML, every value through ``html.escape`` (``esc``): names,
  owners and e-mails are the accounts' own words. No template engine: the
  pages are a few tables, and one function per piece keeps the escaping in
  sight.
- The chart is an SVG polyline drawn here (no chart library, no build step,
  nothing to vendor): two lines, requests and errors per second, over the last
  15 minutes, with the figures also as text (what a screen reader and a test
  read). Colours come from the stylesheet (classes only): the CSP allows no
  inline style.
- No secret is ever an argument of these functions: they get records already
  reduced to what a page may show (edge.dashboard.pages).
"""

import html
import time
from typing import Iterable

from .sampler import WINDOW, Point


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, header: str = "", refresh: float = 0, goto: str = "") -> str:
    """goto: a path of ours the browser moves on to at once (a navigation our page makes)."""
    refresh_attr = ' data-refresh="{}"'.format(esc(refresh)) if refresh else ""
    go = '<meta http-equiv="refresh" content="0;url={}">'.format(esc(goto)) if goto else ""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{go}"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>{title} · edge</title>"
            "<link rel=\"stylesheet\" href=\"/dashboard/static/dashboard.css\">"
            "<script src=\"/dashboard/static/dashboard.js\" defer></script></head>"
            "<body{refresh}><header><a class=\"brand\" href=\"/dashboard/\">edge</a>{header}</header>"
            "<main>{body}</main></body></html>\n").format(
                title=esc(title), refresh=refresh_attr, header=header, body=body, go=go)


def hidden_csrf(token: str) -> str:
    return '<input type="hidden" name="csrf" value="{}">'.format(esc(token))


def table(headings: Iterable[str], rows: Iterable[Iterable[str]], css: str = "") -> str:
    """rows are already HTML (each cell escaped by its maker)."""
    head = "".join("<th>{}</th>".format(esc(h)) for h in headings)
    body = "".join("<tr>{}</tr>".format("".join("<td>{}</td>".format(c) for c in row))
                   for row in rows)
    return '<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>'.format(
        esc(css), head, body)


def rate(value: float) -> str:
    return "{:.1f}".format(value) if value < 100 else "{:.0f}".format(value)


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _polyline(points: list, key: str, top: float, width: int, height: int, now: float) -> str:
    """Steps: each point's rate held over its own interval, from the left edge (zero before the
    first point), so even one point draws a line."""
    def x(at: float) -> str:
        return "{:.1f}".format(max(0.0, width * (1 - (now - at) / WINDOW)))

    base = height - 2
    coords = ["0.0,{:.1f}".format(base)]
    if points:
        coords.append("{},{:.1f}".format(x(points[0].at - points[0].seconds), base))
    for p in points:
        y = "{:.1f}".format(base - (height - 4) * getattr(p, key) / top)
        coords += ["{},{}".format(x(p.at - p.seconds), y), "{},{}".format(x(p.at), y)]
    return " ".join(coords)


def chart(socket_id: str, points: list, size: str, now: float) -> str:
    """The socket's figure: an SVG of the last 15 minutes and the same figures as text.

    ``data-requests`` (requests counted in the window) lets a page script and a test see the
    chart move without reading pixels."""
    width, height = (720, 160) if size == "large" else (240, 40)
    total = sum(p.requests * p.seconds for p in points)
    errors = sum(p.errors * p.seconds for p in points)
    last: Point = points[-1] if points else None
    top = max([1.0] + [p.requests for p in points])
    lines = ""
    if points:
        lines = ('<polyline class="req" points="{}"/><polyline class="err" points="{}"/>'.format(
            _polyline(points, "requests", top, width, height, now),
            _polyline(points, "errors", top, width, height, now)))
    summary = "{} requests, {} errors in 15 min; now {} req/s, {} errors/s".format(
        int(round(total)), int(round(errors)), rate(last.requests if last else 0),
        rate(last.errors if last else 0))
    if size == "large" and last is not None:
        summary += "; {} B/s in, {} B/s out".format(rate(last.bytes_in), rate(last.bytes_out))
    return ('<figure class="chart {size}" data-chart="{sid}" data-size="{size}" '
            'data-requests="{total}" data-errors="{errors}">'
            '<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            'aria-label="requests and errors per second, last 15 minutes">'
            '<rect class="frame" x="0" y="0" width="{w}" height="{h}"/>{lines}</svg>'
            '<figcaption>{summary}</figcaption></figure>').format(
                size=esc(size), sid=esc(socket_id), total=int(round(total)),
                errors=int(round(errors)), w=width, h=height, lines=lines, summary=esc(summary))
