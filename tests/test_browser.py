"""Real browser: a Streamlit server on a free port, driven by Debian's Chromium through
Playwright (never `playwright install`: `make browser` / apt installs /usr/bin/chromium).

Visits every page, clicks a confusion-matrix cell (a marker of the plotly chart) and
sees its gallery, computes a saliency map, uploads an image, draws a lasso on the
Samples page's embedding map and sees exactly the lassoed samples in the gallery, and
saves screenshots under the test's temporary folder.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
PAGES = [("", "PoseLab"), ("runs", "Runs"), ("samples", "Samples"),
         ("confusion", "Confusion matrix"), ("saliency", "Saliency"),
         ("pck", "PCK comparison"), ("sequences", "Sequences")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"streamlit not healthy after {timeout}s:\n{log.read_text()}")


@pytest.fixture
def server(dashboard_runs, tmp_path):
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "POSELAB_RUNS": str(dashboard_runs)}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard.py",
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Until the script run is over and what it sent is drawn: the status widget no
    longer says 'Running', no skeleton placeholders remain, every image has loaded."""
    page.wait_for_timeout(300)
    page.wait_for_function("""() => {
        const status = document.querySelector('[data-testid="stStatusWidget"]');
        if (status && status.innerText.includes('Running')) return false;
        if (document.querySelector('[data-testid="stSkeleton"]')) return false;
        const imgs = [...document.querySelectorAll('[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img')];
        return imgs.every(i => i.complete && i.naturalWidth > 0);
    }""", timeout=timeout)
    page.wait_for_timeout(300)   # let canvases (dataframes, plotly) paint


def choose(page, label: str, option: str, attempts: int = 3) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (a combobox whose input holds
    the chosen value) and wait until the widget shows it. A click that lands while
    Streamlit redraws the dropdown can be lost, so the choice is checked and made again
    (at most ``attempts`` times)."""
    from playwright.sync_api import expect
    combo = page.get_by_role("combobox", name=label, exact=True).first
    for _ in range(attempts):
        combo.click()
        page.get_by_role("option", name=option, exact=True).click()
        try:
            expect(combo).to_have_value(option, timeout=10_000)
            return
        except AssertionError:
            page.keyboard.press("Escape")
    raise AssertionError(f"selectbox {label!r} did not take {option!r}: "
                         f"shows {combo.input_value()!r}")


def click_until(target, appears, attempts: int = 3, timeout: float = 15_000) -> None:
    """Click ``target`` until ``appears`` is attached (a click that lands while Streamlit
    redraws can be lost, as with ``choose``)."""
    for _ in range(attempts):
        target.click()
        try:
            appears.first.wait_for(state="attached", timeout=timeout)
            return
        except Exception:
            pass
    raise AssertionError(f"clicking {target} never showed {appears}")


def no_exception(page) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()


def test_every_page_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run `make browser` (installs Debian's chromium)"
    base, log = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        try:
            # -- every page renders its title without an exception
            for path, title in PAGES:
                page.goto(f"{base}/{path}")
                page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=60_000)
                wait_idle(page)
                no_exception(page)
                page.screenshot(path=str(shots / f"{path or 'home'}.png"), full_page=True)

            # -- the navigation lists the seven pages
            nav = page.locator('[data-testid="stSidebarNav"]')
            for _, title in PAGES[1:]:
                assert nav.get_by_text(title, exact=True).count() == 1, title

            # -- confusion matrix: click a non-empty cell marker, see exactly its samples
            page.goto(f"{base}/confusion")
            page.get_by_role("heading", name="Confusion matrix", exact=True).wait_for(timeout=60_000)
            wait_idle(page)
            chart = page.locator('[data-testid="stPlotlyChart"]').first
            chart.locator(".scatterlayer .point").first.wait_for(timeout=30_000)
            # cell labels are SVG <text> centred on their marker; empty cells have none
            labels = chart.locator(".scatterlayer .textpoint text")
            texts = [(labels.nth(i).text_content() or "").strip() for i in range(labels.count())]
            cell = next(i for i, t in enumerate(texts) if t not in ("", "0"))
            n = int(texts[cell])
            box = labels.nth(cell).bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.get_by_text(f"{n} sample", exact=False).first.wait_for(timeout=30_000)
            wait_idle(page)
            gallery = page.locator('[data-testid="stImage"]')
            assert gallery.count() == min(n, 12)
            no_exception(page)
            gallery.first.scroll_into_view_if_needed()   # the app scrolls inside its own pane
            page.screenshot(path=str(shots / "confusion_cell.png"), full_page=True)

            # -- saliency: a test sample and a method -> the overlay image appears
            page.goto(f"{base}/saliency")
            page.get_by_role("heading", name="Saliency", exact=True).wait_for(timeout=60_000)
            # the first run computes the default method; interact only once it is drawn
            page.get_by_text("Vanilla gradient (the paper's) for", exact=False).first.wait_for(
                timeout=90_000)
            wait_idle(page)
            choose(page, "Method", "Grad-CAM (layer4)")
            page.get_by_text("Grad-CAM (layer4) for", exact=False).first.wait_for(timeout=90_000)
            wait_idle(page)
            no_exception(page)
            page.screenshot(path=str(shots / "saliency_gradcam.png"), full_page=True)

            # -- upload an image (a PNG of the fixture data) on the saliency page
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            click_until(page.get_by_text("Upload", exact=True), uploader)
            picture = next((Path(os.environ["POSELAB_RUNS"]).parent / "images" / "test").glob("*.png"))
            uploader.set_input_files(str(picture))
            page.get_by_text(picture.name).first.wait_for(timeout=30_000)
            # a keypoint preset asks for the picture's keypoints; an image-only one answers
            missing = page.get_by_text("Compute without keypoints (every keypoint marked missing)", exact=True)
            result = page.get_by_text("Grad-CAM (layer4) for", exact=False)
            missing.or_(result).first.wait_for(timeout=90_000)
            wait_idle(page)
            if missing.count():
                missing.first.click()
            result.first.wait_for(timeout=90_000)
            wait_idle(page)
            no_exception(page)
            page.screenshot(path=str(shots / "saliency_upload.png"), full_page=True)
        except Exception as e:
            # CI shows only the log tail: say what the page showed when it failed
            page.screenshot(path=str(shots.parent / "failure.png"), full_page=True)
            text = page.locator("body").inner_text()[-3000:]
            raise AssertionError(f"{e}\n--- page text at failure ({page.url}) ---\n{text}\n"
                                 f"--- streamlit log tail ---\n{log.read_text()[-3000:]}") from e
        finally:
            browser.close()
    assert len(list(shots.glob("*.png"))) == len(PAGES) + 3
    assert "Traceback" not in log.read_text()


def _launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])


def test_lasso_on_the_embedding_map_fills_the_gallery(server, tmp_path):
    """A real lasso (mouse down, a path around the left half of the plot, mouse up) on the
    Samples page's map: Plotly's selection event reaches Streamlit and the gallery shows
    exactly the samples whose markers lie inside the drawn path."""
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run `make browser` (installs Debian's chromium)"
    base, log = server
    with sync_playwright() as pw:
        browser = _launch(pw)
        page = browser.new_page(viewport={"width": 1600, "height": 1400})
        try:
            page.goto(f"{base}/samples")
            page.get_by_role("heading", name="Samples", exact=True).wait_for(timeout=60_000)
            wait_idle(page)
            page.get_by_text("Embedding map (lasso", exact=False).first.click()
            chart = page.locator('[data-testid="stPlotlyChart"]').first
            chart.locator(".scatterlayer .point").first.wait_for(timeout=120_000)
            wait_idle(page)
            drag = chart.locator(".nsewdrag").first.bounding_box()
            x0, y0 = drag["x"] + 4, drag["y"] + 4
            x1, y1 = drag["x"] + drag["width"] / 2, drag["y"] + drag["height"] - 4
            points = chart.locator(".scatterlayer .point")
            centres = [points.nth(i).bounding_box() for i in range(points.count())]
            inside = sum(x0 < b["x"] + b["width"] / 2 < x1 and y0 < b["y"] + b["height"] / 2 < y1
                         for b in centres)
            assert 0 < inside < len(centres), (inside, len(centres))
            page.mouse.move(x0, y0)
            page.mouse.down()
            for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
                page.mouse.move(x, y, steps=12)
            page.mouse.up()
            page.get_by_text(f"{inside} samples selected in the map", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text(f"{inside} of ", exact=False).first.wait_for(timeout=30_000)
            wait_idle(page)
            assert page.locator('[data-testid="stImage"]').count() == min(inside, 24)
            no_exception(page)
            page.screenshot(path=str(tmp_path / "embedding_lasso.png"), full_page=True)
        except Exception as e:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            text = page.locator("body").inner_text()[-3000:]
            raise AssertionError(f"{e}\n--- page text at failure ({page.url}) ---\n{text}\n"
                                 f"--- streamlit log tail ---\n{log.read_text()[-3000:]}") from e
        finally:
            browser.close()
    assert "Traceback" not in log.read_text()
