"""HTML to PDF with WeasyPrint, in the IPAex Gothic font that matplotlib-fontja ships.

The font is declared by `@font-face` pointing at the TTF inside the installed package, so
a PDF renders the same on a machine with no Japanese font installed, and its text stays
text (selectable, searchable, read back by pdftotext). A TTF, not an OTF: an OTF font has
shown blank text in some PDF viewers. The charts (`charts.py`) use the same file.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib_fontja

FONT_FAMILY = "IPAexGothic"


@cache
def font_path() -> Path:
    """The IPAex Gothic TTF inside the installed matplotlib-fontja package."""
    path = Path(matplotlib_fontja.__file__).parent / "fonts" / "ipaexg.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"the report font is missing: {path} (reinstall matplotlib-fontja)")
    return path


def font_face_css() -> str:
    """The `@font-face` rule a PDF's HTML carries (the templates put it in their <style>)."""
    return (
        f"@font-face {{ font-family: '{FONT_FAMILY}'; "
        f"src: url('{font_path().as_uri()}') format('truetype'); }}"
    )


def html_to_pdf(html: str) -> bytes:
    """A complete HTML document (with `font_face_css()` in its style) as PDF bytes.

    No base URL, and a fetcher that reads the report font and inline `data:` images only:
    a report's HTML refers to nothing else (charts are inline SVG), so a hostile string in
    it cannot make the renderer read a local file or call out to the network.
    """
    from weasyprint import HTML  # imported on use: loading Pango is slow

    document = HTML(string=html, url_fetcher=_font_only_fetcher())
    pdf: bytes = document.write_pdf(font_config=_font_config())
    return pdf


_thread = threading.local()


def _font_config() -> Any:
    """The thread's WeasyPrint font configuration, kept for every PDF it renders.

    A new one per PDF (WeasyPrint's default) registers the `@font-face` font with
    fontconfig again each time and keeps growing the process by ~0.3 MB a report; one kept
    per thread (fontconfig and Pango objects are not shared between threads) stays flat.
    """
    config = getattr(_thread, "font_config", None)
    if config is None:
        from weasyprint.text.fonts import FontConfiguration

        config = _thread.font_config = FontConfiguration()
    return config


@cache
def _font_only_fetcher() -> Any:
    from weasyprint.urls import URLFetcher

    allowed = font_path().as_uri()

    class FontOnly(URLFetcher):  # type: ignore[misc]  # WeasyPrint ships no type hints
        """WeasyPrint's fetcher, allowed the report font and `data:` URIs, nothing else."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            if url == allowed or url.startswith("data:"):
                return super().fetch(url, headers)
            raise ValueError(f"a report may not load {url[:80]!r}")

    return FontOnly()
