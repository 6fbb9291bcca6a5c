"""A real browser on the Releases view: Debian's chromium, driven through chromium-driver by
Selenium, against a running `make run` stack. Screenshots go to the folder the test names."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@contextmanager
def chromium(downloads: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1500,1000",
                f"--user-data-dir={downloads / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)


def log_in(driver, base: str, username: str, password: str) -> None:
    """Airflow's own login page, as a person uses it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(f"{base}/auth/login")
    wait_for(driver, ec.presence_of_element_located((By.NAME, "username"))).send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, lambda d: d.get_cookie("_token") is not None, 60)


def releases_walkthrough(driver, base: str, service: str, expect: dict[str, str], out: Path) -> dict:
    """Open Releases (the UI's page for the navigation entry), find `service` with the versions `expect` names per
    environment in the matrix, open its service page; screenshots of both under `out`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    out.mkdir(parents=True, exist_ok=True)
    # The plugin's external view (in the UI's navigation) frames /release/ui/ at /plugin/releases.
    driver.get(f"{base}/plugin/releases")
    frame = wait_for(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[src*='/release/ui/']")))
    driver.switch_to.frame(frame)
    row = wait_for(driver, ec.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-service='{service}']")))
    cells = {td.get_attribute("data-env"): td.text for td in row.find_elements(By.CSS_SELECTOR, "td[data-env]")}
    driver.switch_to.default_content()
    driver.save_screenshot(str(out / "releases-matrix.png"))
    driver.switch_to.frame(frame)
    for env, version in expect.items():
        assert cells.get(env, "").startswith(version), (env, cells)
    row.find_element(By.CSS_SELECTOR, "a.service").click()
    heading = wait_for(driver, ec.presence_of_element_located((By.ID, "service-name")))
    assert heading.text == service
    history = driver.find_element(By.ID, "history").text
    timeline = driver.find_elements(By.ID, "timeline")
    driver.switch_to.default_content()
    driver.save_screenshot(str(out / "releases-service.png"))
    return {"cells": cells, "history": history, "timeline": bool(timeline)}
