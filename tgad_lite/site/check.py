"""Open every page of a built book in headless Chromium and report what a reader would see broken.

The site is served from a local HTTP server (``127.0.0.1``, a free port) and Chromium is driven
over the Chrome DevTools Protocol with a small websocket client (``websocket-client``). For each
page: console errors, uncaught exceptions, failed requests and HTTP errors; images that did not
load (``naturalWidth == 0``); math that MathJax could not typeset; and every link into the site,
resolved to a file and, with a ``#fragment``, to an element id of the target page. The search page
is queried for a word and must list an expected page. Screenshots (PNG) are saved on request.

Chromium runs with ``--headless --no-sandbox --disable-gpu`` and no network services, in a fresh
profile folder that is removed afterwards. Nothing here needs the network.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgad_lite.site.errors import SiteError

CHROMIUM_ENV = "CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)
INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian), or set CHROMIUM=/path/to/chromium"
VIEWPORT = (1280, 900)
# The DevTools events the check reads (the others are dropped as they come).
_KEPT_EVENTS = frozenset(
    {
        "Page.loadEventFired",
        "Runtime.consoleAPICalled",
        "Runtime.exceptionThrown",
        "Log.entryAdded",
        "Network.loadingFailed",
        "Network.responseReceived",
    }
)
# Folders of the built site that hold assets, not pages.
_ASSET_DIRS = ("_static", "_sources", "_images", "_downloads")

# Runs in the page once it has loaded: images forced to load (lazy ones too), MathJax's first
# typeset finished, fonts ready; then what the check needs.
_PAGE_STATE_JS = r"""
(async () => {
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done); img.addEventListener("error", done);
  })));
  if (document.querySelector('script[src*="mathjax/"]')) {
    // before MathJax has loaded, window.MathJax is only its configuration object
    for (let i = 0; i < 400 && !(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise); i++) {
      await new Promise((done) => setTimeout(done, 25));
    }
    if (window.MathJax && window.MathJax.startup) await window.MathJax.startup.promise;
  }
  await document.fonts.ready;
  const math = document.querySelectorAll("span.math, div.math");
  return {
    title: document.title,
    images: images.length,
    brokenImages: images.filter((img) => !(img.complete && img.naturalWidth > 0))
      .map((img) => img.getAttribute("src") || "(no src)"),
    math: math.length,
    mathTypeset: document.querySelectorAll("mjx-container").length,
    mathErrors: Array.from(document.querySelectorAll("mjx-merror, [data-mjx-error]"))
      .map((el) => el.textContent.slice(0, 80)),
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
    ids: Array.from(document.querySelectorAll("[id], a[name]")).map((el) => el.id || el.getAttribute("name")),
  };
})()
"""


def find_chromium() -> Path | None:
    """Chromium's executable: ``$CHROMIUM``, else the first of ``CHROMIUM_NAMES`` on ``PATH``."""
    chosen = os.environ.get(CHROMIUM_ENV, "").strip()
    if chosen:
        return Path(chosen) if Path(chosen).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


# --------------------------------------------------------------------------- results


@dataclass
class PageCheck:
    """What one page showed: ``path`` relative to the site root."""

    path: str
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    math: int = 0
    math_typeset: int = 0
    math_errors: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


@dataclass
class SiteCheck:
    """The whole check: one ``PageCheck`` per page, the links that lead nowhere, the search."""

    pages: list[PageCheck]
    broken_links: list[str]
    external_links: int
    search_word: str | None = None
    search_results: list[str] = field(default_factory=list)
    search_expected: str | None = None
    screenshots: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        """Every failure, one line each, naming the page; empty when the site passed."""
        out = []
        for page in self.pages:
            out += [f"{page.path}: console error: {e}" for e in page.console_errors]
            out += [f"{page.path}: image did not load: {src}" for src in page.broken_images]
            out += [f"{page.path}: math not typeset: {text!r}" for text in page.math_errors]
            if page.math and not page.math_typeset:
                out.append(f"{page.path}: {page.math} math element(s) and none typeset by MathJax")
        out += self.broken_links
        if self.search_expected is not None and self.search_expected not in self.search_results:
            out.append(
                f"search.html: searching {self.search_word!r} did not list {self.search_expected} "
                f"(results: {', '.join(self.search_results) or 'none'})"
            )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


# Prose words of a Markdown cell: code spans, math and link targets removed first.
_NOT_PROSE_RE = re.compile(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\]\([^)]*\)|<[^>]*>", re.S)
_WORD_RE = re.compile(r"[A-Za-z]{7,}")


def _prose_words(notebook: Path) -> list[str]:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    text = " ".join(_NOT_PROSE_RE.sub(" ", c.source) for c in nb.cells if c.cell_type == "markdown")
    return [w.lower() for w in _WORD_RE.findall(text)]


def search_word(notebook: str | os.PathLike, others: Iterable[str | os.PathLike] = ()) -> str:
    """A word of ``notebook``'s prose (7+ letters) that no notebook of ``others`` uses: the most
    frequent one, ties broken alphabetically. The search check asks the site for it."""
    counts: dict[str, int] = {}
    for word in _prose_words(Path(notebook)):
        counts[word] = counts.get(word, 0) + 1
    for other in others:
        for word in set(_prose_words(Path(other))):
            counts.pop(word, None)
    if not counts:
        raise SiteError(f"{notebook}: no word of its prose is absent from the other notebooks; pass one explicitly")
    return min(counts, key=lambda w: (-counts[w], w))


# --------------------------------------------------------------------------- the local server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(html_dir: str | os.PathLike) -> Iterator[str]:
    """Serve ``html_dir`` on ``127.0.0.1`` (a free port) while in the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- the browser


class Browser:
    """Headless Chromium with one page, driven over the DevTools Protocol (use as a context manager)."""

    def __init__(self, chromium: str | os.PathLike | None = None, *, timeout_s: float = 30.0) -> None:
        found = Path(chromium) if chromium is not None else find_chromium()
        if found is None or not found.is_file():
            raise SiteError(f"Chromium not found ({chromium or 'not on PATH'}); {INSTALL_HINT}")
        self.executable = found
        self.timeout_s = timeout_s
        self.events: list[tuple[str, dict[str, Any]]] = []  # (page open when it came, event)
        self.page = "about:blank"
        self._documents: dict[str, str] = {}  # network request id -> URL of the page that made it
        self._next_id = 0
        self._process: subprocess.Popen | None = None
        self._profile: str | None = None
        self._socket: Any = None

    def __enter__(self) -> Browser:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        import websocket  # websocket-client

        self._profile = tempfile.mkdtemp(prefix="tgad-chromium-")
        command = [
            str(self.executable),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self._profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its helper processes form one group, ended together in close()
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while not port_file.is_file() or not port_file.read_text().strip():
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace")[-800:] if self._process.stderr else ""
                raise SiteError(f"Chromium exited at start (code {self._process.returncode}): {err.strip()}")
            if time.monotonic() > deadline:
                raise SiteError(f"Chromium did not open its DevTools port within {self.timeout_s:.0f} s")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout_s) as response:
            targets = json.load(response)
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise SiteError("Chromium opened no page to drive")
        self._socket = websocket.create_connection(
            pages[0]["webSocketDebuggerUrl"], timeout=self.timeout_s, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=VIEWPORT[0],
            height=VIEWPORT[1],
            deviceScaleFactor=1,
            mobile=False,
        )

    def close(self) -> None:
        """Close the connection, end Chromium's process group (only it) and remove its profile."""
        if self._socket is not None:
            with contextlib.suppress(Exception):
                self._socket.close()
            self._socket = None
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
            if process.stderr is not None:
                process.stderr.close()
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    # ----------------------------------------------------------------------- protocol

    def _receive(self, until: Any, timeout_s: float | None = None) -> dict[str, Any] | None:
        """Read messages until ``until(message)`` holds; keep the events the check reads.

        ``until=None`` reads for ``timeout_s`` and returns None (collects late events).
        """
        import websocket

        limit = timeout_s or self.timeout_s
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if until is None:
                    return None
                raise SiteError(f"Chromium did not answer within {limit:.0f} s")
            self._socket.settimeout(remaining)
            try:
                message = json.loads(self._socket.recv())
            except websocket.WebSocketTimeoutException:
                continue
            method = message.get("method")
            if method == "Network.requestWillBeSent":  # which page asked: late requests are not the next page's
                params = message["params"]
                self._documents[params["requestId"]] = params.get("documentURL") or self.page
            elif method in _KEPT_EVENTS:
                self.events.append((self.page, message))
            if until is not None and until(message):
                return message

    def send(self, method: str, *, timeout_s: float | None = None, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result; ``SiteError`` for a protocol error."""
        self._next_id += 1
        call_id = self._next_id
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        reply = self._receive(lambda m: m.get("id") == call_id, timeout_s)
        if "error" in reply:
            raise SiteError(f"DevTools {method} failed: {reply['error'].get('message')}")
        return reply.get("result", {})

    def evaluate(self, expression: str, *, timeout_s: float | None = None) -> Any:
        """The JSON value of ``expression`` in the page (promises awaited); ``SiteError`` if it throws."""
        result = self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True, timeout_s=timeout_s
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text")
            raise SiteError(f"script failed in the page: {text}")
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for its load event; later events are counted as this page's."""
        self.page = url
        mark = len(self.events)
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise SiteError(f"{url}: {result['errorText']}")
        loaded = any(e["method"] == "Page.loadEventFired" for _, e in self.events[mark:])  # may precede the reply
        if not loaded:
            self._receive(lambda m: m.get("method") == "Page.loadEventFired")

    def settle(self, seconds: float = 0.3) -> None:
        """Collect the events that arrive within ``seconds`` (late requests, such as the favicon)."""
        self._receive(None, seconds)

    def screenshot(self, path: str | os.PathLike) -> Path:
        """Save the viewport as a PNG (written to a temporary name, then renamed)."""
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        return path

    def errors(self) -> dict[str, list[str]]:
        """Console errors, uncaught exceptions, failed requests and HTTP errors, by page URL.

        A request's failure counts for the page that made it (its ``documentURL``), even when it
        arrives after the next page was opened; the rest counts for the page open at the time.
        """
        out: dict[str, list[str]] = {}
        for page, event in self.events:
            method, params = event["method"], event.get("params", {})
            text = None
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = (details.get("exception") or {}).get("description") or details.get("text", "exception")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                text = f"{entry.get('text')} {entry.get('url', '')}".strip()
                page = self._documents.get(entry.get("networkRequestId"), page)
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                text = f"request failed: {params.get('errorText')}"
                page = self._documents.get(params.get("requestId"), page)
            elif method == "Network.responseReceived" and params.get("response", {}).get("status", 200) >= 400:
                text = f"HTTP {params['response']['status']} for {params['response'].get('url')}"
                page = self._documents.get(params.get("requestId"), page)
            if text is not None:
                found = out.setdefault(page, [])
                if text not in found:  # a failed load is reported by the network and by the log
                    found.append(text)
        return out


# --------------------------------------------------------------------------- the check


def site_pages(html_dir: str | os.PathLike) -> list[str]:
    """Every HTML page of the site (paths relative to ``html_dir``, ``/``-separated), assets aside."""
    root = Path(html_dir)
    pages = []
    for path in sorted(root.rglob("*.html")):
        relative = path.relative_to(root).as_posix()
        if relative.split("/", 1)[0] not in _ASSET_DIRS:
            pages.append(relative)
    return pages


def _check_links(
    pages: Sequence[PageCheck], html_dir: Path, base_url: str, ids: dict[str, set[str]]
) -> tuple[list[str], int]:
    """(one line per link into the site that leads to no file or no element, links leaving the site)."""
    broken: list[str] = []
    external = 0
    for page in pages:
        for link in dict.fromkeys(page.links):
            if not link.startswith(base_url):
                if link.startswith(("http:", "https:")):
                    external += 1
                continue
            parsed = urllib.parse.urlsplit(link)
            target = urllib.parse.unquote(parsed.path).lstrip("/")
            if target == "" or target.endswith("/"):
                target += "index.html"
            if not (html_dir / target).is_file():
                broken.append(f"{page.path}: link to a missing file: {target} ({link})")
            elif parsed.fragment and target in ids and urllib.parse.unquote(parsed.fragment) not in ids[target]:
                broken.append(f"{page.path}: link to a missing anchor: {target}#{parsed.fragment}")
    return broken, external


def _search(browser: Browser, base_url: str, word: str) -> list[str]:
    """The pages (``notebooks/x.html``) the site's search page lists for ``word``."""
    browser.open(f"{base_url}search.html?q={urllib.parse.quote(word)}")
    done = r"""
    (async () => {
      for (let i = 0; i < 600; i++) {
        const status = document.querySelector("#search-results .search-summary");
        if (status && status.textContent.trim()) {
          return Array.from(document.querySelectorAll("#search-results ul.search li > a"))
            .map((a) => a.pathname);
        }
        await new Promise((done) => setTimeout(done, 50));
      }
      return null;
    })()
    """
    found = browser.evaluate(done, timeout_s=60)
    if found is None:
        raise SiteError(f"search.html: searching {word!r} did not finish within 30 s")
    prefix = urllib.parse.urlsplit(base_url).path
    return sorted({urllib.parse.unquote(p)[len(prefix) :] for p in found})


def check_site(
    html_dir: str | os.PathLike,
    *,
    search_word: str | None = None,
    search_expected: str | None = None,
    screenshots: Iterable[str] = (),
    screenshot_dir: str | os.PathLike | None = None,
    chromium: str | os.PathLike | None = None,
    timeout_s: float = 30.0,
) -> SiteCheck:
    """Open every page of the built site ``html_dir`` in headless Chromium; see the module docstring.

    ``search_word``: queried on ``search.html``, whose results must include page
    ``search_expected`` (``notebooks/01_gat_from_scratch.html``). ``screenshots``: pages to
    photograph (``index.html``); each is saved as ``<screenshot_dir>/<page stem>.png``, and for a
    page with a figure in its content also ``<stem>-figure.png`` scrolled to the first one.
    Returns a ``SiteCheck`` (``.problems`` lists every failure); raises ``SiteError`` when the
    browser cannot be started or a page cannot be opened at all.
    """
    started = time.perf_counter()
    root = Path(html_dir)
    if not (root / "index.html").is_file():
        raise SiteError(f"no built site in {root} (index.html missing); build it with `make site`")
    wanted = list(screenshots)
    shots_dir = Path(screenshot_dir) if screenshot_dir is not None else root.parent / "screenshots"
    checks: list[PageCheck] = []
    shots: dict[str, Path] = {}
    with serve(root) as base_url, Browser(chromium, timeout_s=timeout_s) as browser:
        for path in site_pages(root):
            browser.open(base_url + path)
            state = browser.evaluate(_PAGE_STATE_JS, timeout_s=max(timeout_s, 60))
            checks.append(
                PageCheck(
                    path=path,
                    title=state["title"],
                    broken_images=state["brokenImages"],
                    images=state["images"],
                    math=state["math"],
                    math_typeset=state["mathTypeset"],
                    math_errors=state["mathErrors"],
                    links=state["links"],
                    ids=set(state["ids"]),
                )
            )
            if path in wanted:
                stem = Path(path).stem
                shots[path] = browser.screenshot(shots_dir / f"{stem}.png")
                scrolled = browser.evaluate(
                    "(() => { const img = document.querySelector('main .cell_output img');"
                    " if (!img) return false; img.scrollIntoView({block: 'center'}); return true; })()"
                )
                if scrolled:
                    time.sleep(0.2)  # let the scroll paint
                    shots[f"{path} (first figure)"] = browser.screenshot(shots_dir / f"{stem}-figure.png")
        results: list[str] = []
        if search_word is not None:
            results = _search(browser, base_url, search_word)
            checks.append(PageCheck(path=f"search.html?q={urllib.parse.quote(search_word)}"))
        browser.settle()
        errors = browser.errors()
        for check in checks:
            check.console_errors = errors.pop(base_url + check.path, [])
        # errors of a URL that is none of the pages opened (a redirect, a frame) still fail the check
        checks += [PageCheck(path=url, console_errors=found) for url, found in errors.items() if found]
        broken, external = _check_links(checks, root, base_url, {c.path: c.ids for c in checks})
    missing = sorted(set(wanted) - {c.path for c in checks})
    if missing:
        raise SiteError(f"cannot photograph pages the site does not have: {', '.join(missing)}")
    return SiteCheck(
        pages=checks,
        broken_links=broken,
        external_links=external,
        search_word=search_word,
        search_results=results,
        search_expected=search_expected,
        screenshots=shots,
        seconds=time.perf_counter() - started,
    )
