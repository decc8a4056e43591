"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a live ``streamlit run``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and the ``playwright`` package (never
``playwright install``: its browser download is not possible here). The screenshot lands in
``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from synthetic import create_synthetic_scaling_study, create_synthetic_study

from mobilenet_search.ui.dashboard import streamlit_command

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Without these, Chromium tries the (closed) network at every start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """A live dashboard on a free loopback port over a 60-trial study with 2 noise repeats; stopped afterwards."""
    results = tmp_path_factory.mktemp("results")
    create_synthetic_study(f"sqlite:///{results / 'demo.db'}", "demo", 60, seed=3, noise_repeats=2)
    yield from _serve(results)


@pytest.fixture(scope="module")
def scaling_app_url(tmp_path_factory):
    """A live dashboard over a synthetic scaling study (``synthetic.create_synthetic_scaling_study``)."""
    results = tmp_path_factory.mktemp("scaling-results")
    create_synthetic_scaling_study(f"sqlite:///{results / 'scaled.db'}", "scaled")
    yield from _serve(results)


def _serve(results: Path):
    """Run the dashboard over ``results`` until the caller is done; its URL."""
    port = _free_port()
    command = streamlit_command(port=port, address="127.0.0.1", headless=True, results_dir=results)
    log = open(results / "streamlit.log", "w")  # noqa: SIM115 - closed in the teardown
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=results,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            pytest.fail(f"streamlit did not start:\n{(results / 'streamlit.log').read_text()[-3000:]}")
        time.sleep(0.3)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def test_dashboard_renders_the_frontier_in_chromium_and_a_click_selects_a_trial(app_url):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url)
            chart = page.locator('[data-testid="stPlotlyChart"]').first
            chart.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
            page.get_by_text("Export to the model library").first.wait_for(timeout=30_000)
            legend = chart.locator(".legend").text_content()
            assert "Pareto front" in legend and "paper reference networks" in legend and "seed repeats" in legend
            assert chart.locator(".scatterlayer .point").count() > 30  # 60 trials and the references, drawn
            assert chart.locator("path.yerror").count() > 30  # their 95 % intervals, as error bars
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # The best trial is shown first; clicking a dominated one (first trace: "trials") selects it instead.
            export = page.locator('[data-testid="stCode"]').last
            before = export.text_content()
            chart.locator(".scatterlayer .trace").first.locator(".point").first.click(force=True)
            deadline = time.monotonic() + 30
            while export.text_content() == before and time.monotonic() < deadline:
                time.sleep(0.2)
            after = export.text_content()
            assert after != before and "--trial " in after
            number = after.split("--trial ")[1].split()[0]
            chart.get_by_text(f"trial {number}").first.wait_for(timeout=30_000)  # ringed on the chart
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_the_scaling_tab_draws_the_curves_and_the_recommended_net_in_chromium(scaling_app_url):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(scaling_app_url)
            page.get_by_role("tab", name="Scaling").click(timeout=60_000)
            panel = page.locator('[role="tabpanel"]:visible')
            # The fit takes its 200 bootstrap replicates first: seconds, longer on a loaded machine.
            chart = panel.locator('[data-testid="stPlotlyChart"]').first
            chart.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=240_000)
            legend = chart.locator(".legend").text_content()
            for name in ("width fit", "resolution fit", "depth fit", "compound fit",
                         "paper's width x resolution family", "recommended"):
                assert name in legend, legend
            assert chart.locator(".scatterlayer .point").count() >= 20  # measured nets, knees, the paper's, the star
            assert chart.locator(".scatterlayer .trace path.js-fill").count() >= 4  # one band per direction
            # The recommendation below the chart renders after it: wait for it rather than look once.
            panel.get_by_text("predicted accuracy").first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "dashboard-scaling.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard-scaling.png").stat().st_size > 10_000
