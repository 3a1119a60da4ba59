"""The notebooks in a real browser: Voila (code hidden, widgets live) and JupyterLab, driven by
Playwright in the system's headless Chromium (never a downloaded browser).

`make test` installs Debian's chromium when it is missing and apt is there; without a chromium
(macOS, say) these tests are skipped with a one-line reason.  Screenshots land in artifacts/ (git-ignored).
Every wait is on the state that is asserted next, never a fixed sleep.
"""

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("LOSSVIZ_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
BIN = pathlib.Path(sys.executable).parent

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not pathlib.Path(CHROMIUM).exists(),
                       reason=f"no chromium at {CHROMIUM} (make test installs it where apt-get is; "
                              "LOSSVIZ_CHROMIUM names another)"),
]
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited before it listened"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def _server(args, log_name):
    env = dict(os.environ, LOSSVIZ_FAST="1")
    env.pop("MPLBACKEND", None)
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / log_name, "w")
    return subprocess.Popen(args, cwd=NOTEBOOKS, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


# JavaScript: the pixels of the first figure canvas in the widget box that holds a given control.
PANEL_PIXELS = """(label) => {
  const lab = [...document.querySelectorAll('.widget-label')].find(e => e.textContent.trim() === label);
  let box = lab;
  while (box && !(box.querySelector && box.querySelector('canvas'))) box = box.parentElement;
  const c = box.querySelector('canvas');
  return c.toDataURL();
}"""


def test_voila_panel_reacts_to_mouse_and_keyboard(browser):
    port = _free_port()
    proc = _server([str(BIN / "voila"), "01_ms_loss_gpw.ipynb", "--no-browser", f"--port={port}",
                    "--Voila.ip=127.0.0.1"], "voila.log")
    try:
        _wait_for_port(port, proc)
        page = browser.new_page(viewport={"width": 1024, "height": 768})  # a classroom projector
        page.goto(f"http://127.0.0.1:{port}/", wait_until="commit", timeout=300_000)
        label = "β (negative scale)"  # a long description: shown above the slider's track
        slider = page.locator(".widget-label", has_text=label).first.locator("xpath=..") \
            .locator(".widget-slider").first  # the first panel's slider, its label in the box above it
        slider.wait_for(timeout=300_000)
        slider.scroll_into_view_if_needed()
        readout = slider.locator(".widget-readout")
        page.wait_for_function("(label) => { try { return (" + PANEL_PIXELS + ")(label).length > 5000; } "
                               "catch (e) { return false; } }", arg=label, timeout=120_000)  # drawn
        page.screenshot(path=str(ARTIFACTS / "voila_01_before.png"))
        start_pixels, start_value = page.evaluate(PANEL_PIXELS, label), readout.inner_text()

        # Mouse: drag the handle to the right.
        handle = slider.locator(".noUi-handle")
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()
        page.wait_for_function("([label, old]) => (" + PANEL_PIXELS + ")(label) !== old",
                               arg=[label, start_pixels], timeout=60_000)
        dragged_pixels, dragged_value = page.evaluate(PANEL_PIXELS, label), readout.inner_text()
        assert dragged_value != start_value
        page.screenshot(path=str(ARTIFACTS / "voila_01_after_mouse.png"))

        # Keyboard: focus the handle and step it.
        handle.focus()
        for _ in range(5):
            page.keyboard.press("ArrowLeft")
        page.wait_for_function("([label, old]) => (" + PANEL_PIXELS + ")(label) !== old",
                               arg=[label, dragged_pixels], timeout=60_000)
        assert readout.inner_text() != dragged_value
        page.screenshot(path=str(ARTIFACTS / "voila_01_after_keyboard.png"))

        # Every figure fits the 1024-px page, and every slider keeps a usable track.
        cut = page.evaluate("""() => [...document.querySelectorAll('canvas')]
            .map(c => c.getBoundingClientRect()).filter(r => r.width > 50 && r.right > innerWidth + 1)
            .map(r => [r.left, r.right])""")
        assert cut == [], f"figures wider than the page: {cut}"
        tracks = page.evaluate("""() => [...document.querySelectorAll('.widget-slider .slider-container')]
            .filter(e => e.offsetParent !== null).map(e => e.getBoundingClientRect().width)""")
        assert tracks and min(tracks) >= 120, f"slider tracks too short: {sorted(tracks)[:5]}"

        # Train: the button says so while the run lasts, then comes back.
        panel = page.locator(".widget-vbox", has=page.locator(".widget-label", has_text="MS preset")).last
        seed = panel.locator(".widget-text", has=page.locator(".widget-label", has_text="seed")).locator("input")
        seed.fill("3")
        seed.press("Enter")
        button = panel.locator("button", has_text="Train")
        button.click()
        sync_api.expect(button).to_have_text(re.compile("training"), timeout=30_000)
        sync_api.expect(button).to_have_text(re.compile("^\\s*Train\\s*$"), timeout=120_000)
        sync_api.expect(button).to_be_enabled()
        page.screenshot(path=str(ARTIFACTS / "voila_01_after_train.png"))

        _assert_no_errors(page)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for_idle_kernel(port: int, token: str, timeout: float = 120) -> None:
    """Wait until the server reports the notebook's kernel as started and idle."""
    url = f"http://127.0.0.1:{port}/api/sessions?token={token}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = json.load(urllib.request.urlopen(url, timeout=5))
        if sessions and all(s["kernel"]["execution_state"] == "idle" for s in sessions):
            return
        time.sleep(0.2)
    raise TimeoutError("the notebook's kernel never became idle")


def _assert_no_errors(page) -> None:
    """No cell raised (an error output) and every widget found its model."""
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    raised = [t for t in stderr.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert raised == []
    assert page.get_by_text("Error displaying widget").count() == 0


PROMPTS_DONE = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent);
  return prompts.length > 0 && prompts.every(t => /\\[\\d+\\]/.test(t));
}"""


def test_jupyterlab_runs_the_tour_without_errors(browser, tmp_path):
    port, token = _free_port(), "lossviz-test"
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "00_tour.ipynb", work / "00_tour.ipynb")  # the committed file stays untouched
    proc = _server([str(BIN / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                    f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--allow-root",
                    "--LabApp.news_url=", "--ServerApp.disable_check_xsrf=True"], "jupyterlab.log")
    try:
        _wait_for_port(port, proc)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/lab/tree/00_tour.ipynb?token={token}", timeout=120_000)
        page.locator(".jp-Notebook").wait_for(timeout=120_000)
        _wait_for_idle_kernel(port, token)
        page.wait_for_function("() => document.querySelector('.jp-Notebook-ExecutionIndicator')"
                               "?.getAttribute('data-status') === 'idle'", timeout=60_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator("li[data-command='runmenu:run-all']").click()
        page.wait_for_function("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
                               ".some(e => e.textContent.includes('*'))", timeout=60_000)
        page.wait_for_function(PROMPTS_DONE, timeout=300_000)
        page.screenshot(path=str(ARTIFACTS / "lab_00_tour.png"))
        _assert_no_errors(page)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


MATH_DONE = """() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0
  && document.querySelectorAll('.MathJax, .MathJax_Display').length > 0"""


def test_static_html_reads_offline(browser, tmp_path):
    """`make html`'s pages with the network cut: formulas typeset by the local MathJax, no request
    leaves the page's folder, and the previous / index / next links lead where they say."""
    out = tmp_path / "html"
    subprocess.run([sys.executable, str(ROOT / "docs" / "build_html.py"), str(out), "00", "01"],
                   check=True, cwd=ROOT, capture_output=True)
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    outside = []

    def offline(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto((out / "00_tour.html").as_uri())
    page.wait_for_function(MATH_DONE, timeout=60_000)
    markdown = "\n".join(page.locator(".jp-MarkdownOutput").all_inner_texts())
    assert page.locator(".MathJax, .MathJax_Display").count() > 20            # the tour's formulas, typeset
    assert page.locator(".MathJax_Error, merror").count() == 0
    assert "$" not in markdown                                                # no raw TeX left in the prose
    assert outside == []
    page.get_by_role("link", name="next →", exact=False).first.click()
    page.wait_for_url("**/01_ms_loss_gpw.html")
    page.wait_for_function(MATH_DONE, timeout=60_000)
    page.get_by_role("link", name="index", exact=True).first.click()
    page.wait_for_url("**/index.html")
    assert page.get_by_role("link", name="01", exact=False).count() == 1
    page.screenshot(path=str(ARTIFACTS / "html_index.png"))
    assert outside == []


def test_slides_of_the_tour_step_with_the_keyboard(browser, tmp_path):
    """`make slides NB=00`: the tour as a reveal.js deck (JupyterLab's RISE presenter, offline),
    one slide per section, stepped with the arrow keys."""
    port, token = _free_port(), "lossviz-slides"
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "00_tour.ipynb", work / "00_tour.ipynb")
    proc = _server([sys.executable, "-m", "jupyterlab_rise", "--no-browser", f"--port={port}",
                    "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                    "--allow-root"], "slides.log")
    try:
        _wait_for_port(port, proc)
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.goto(f"http://127.0.0.1:{port}/rise/00_tour.ipynb?token={token}", timeout=120_000)
        sections = "() => document.querySelectorAll('.reveal .slides > section').length"
        page.wait_for_function(sections + " >= 8", timeout=180_000)
        page.locator(".reveal .slides > section").first.wait_for(timeout=60_000)
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => location.hash.startsWith('#/slide-2')", timeout=30_000)
        assert page.locator(".reveal .slides > section.present").get_by_text("The idea and the math").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "slides_00.png"))
        _assert_no_errors(page)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
