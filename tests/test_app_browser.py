"""The app as a person uses it: started on a free local port over the tiny pipeline's
outputs, driven in headless Chromium. Each tab's button gives its images, with no console
error; a screenshot of each tab is saved. The server stops when the test ends."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import browser_missing, chromium, console_errors, skip_or_fail


def gradio_missing() -> str | None:
    try:
        import gradio  # noqa: F401
    except ImportError:
        return "gradio missing (pip install -r requirements-app.txt)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(pipeline: Path, tmp_path: Path) -> Iterator[str]:
    skip_or_fail(browser_missing() or gradio_missing())
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "fashion.app", "--root", str(pipeline), "--port", str(port),
         "--no-browser"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "app.log").read_text()) from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def wait_for(driver, script: str, expected: int, seconds: float = 120) -> int:
    deadline = time.monotonic() + seconds
    while (found := driver.execute_script(script)) < expected and time.monotonic() < deadline:
        time.sleep(0.25)
    return found


def loaded_images(selector: str) -> str:
    return (
        f"return Array.from(document.querySelectorAll('{selector} img'))"
        ".filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_the_three_tabs_work_in_chromium(app_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with chromium(tmp_path / "chromium-profile") as driver:
        driver.get(app_url)
        wait_for(driver, "return document.querySelectorAll('#prompt textarea').length", 1)
        driver.find_element(By.CSS_SELECTOR, "#prompt textarea").send_keys(
            "the lady is wearing a red long-sleeved dress."
        )
        driver.find_element(By.ID, "generate").click()
        for gallery in ("#generate-base", "#generate-tuned"):
            assert wait_for(driver, loaded_images(gallery), 4) == 4, gallery
        driver.save_screenshot(str(tmp_path / "generate.png"))

        driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Search')]").click()
        driver.find_element(By.CSS_SELECTOR, "#query textarea").send_keys("a man in a blue coat")
        driver.find_element(By.ID, "search").click()
        for gallery in ("#search-tuned", "#search-base"):
            assert wait_for(driver, loaded_images(gallery), 8) == 8, gallery
        captions = driver.find_element(By.ID, "search-tuned").text
        assert "1. " in captions and "8. " in captions, captions
        driver.save_screenshot(str(tmp_path / "search.png"))

        driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Redress')]").click()
        index = driver.find_element(By.CSS_SELECTOR, "#redress-index input")
        index.clear()
        index.send_keys("99999")
        driver.find_element(By.ID, "redress").click()
        status = "return document.querySelector('#redress-status').innerText"
        deadline = time.monotonic() + 60
        while "pick a test image" not in driver.execute_script(status):
            assert time.monotonic() < deadline, driver.execute_script(status)
            time.sleep(0.25)
        index.clear()
        index.send_keys("0")
        driver.find_element(By.ID, "redress").click()
        for gallery in ("#redress-input", "#redress-mask", "#redress-map"):
            assert wait_for(driver, loaded_images(gallery), 1) == 1, gallery
        for gallery in ("#redress-base", "#redress-tuned"):
            assert wait_for(driver, loaded_images(gallery), 4) == 4, gallery
        assert "Redressed to:" in driver.find_element(By.ID, "redress-sentence").text
        driver.save_screenshot(str(tmp_path / "redress.png"))
        assert not driver.find_elements(By.XPATH, "//*[contains(., 'Traceback')]")
        errors = console_errors(driver)
        assert not errors, errors
    for tab in ("generate", "search", "redress"):
        assert (tmp_path / f"{tab}.png").stat().st_size > 10_000


def test_a_handler_shows_an_app_error_as_its_status_line() -> None:
    skip_or_fail(gradio_missing())
    from fashion.app.outputs import AppError
    from fashion.app.ui import shown, whole

    assert shown(lambda: (1, 2), (None, None)) == (1, 2, "")

    def refused() -> tuple[int, int]:
        raise AppError("pick a test image from 0 to 9: the test split holds 10")

    assert shown(refused, (None, None)) == (
        None, None, "**Cannot do that:** pick a test image from 0 to 9: the test split holds 10",
    )  # fmt: skip
    assert whole(4.0, "rows") == 4
    for value in (None, 2.5):
        with pytest.raises(AppError, match="rows must be a whole number"):
            whole(value, "rows")
