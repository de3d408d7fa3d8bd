"""The patient page in a real browser: Debian's headless Chromium driven by Selenium, against
`clinrisk serve` (gunicorn) on a real `mlflow server` champion, and a second service that also
serves a diabetes champion trained into the same registry (a second model's page).

Set SCREENSHOT_DIR to keep screenshots of the answer and the card (the README's come from here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait
from web_support import DIABETIC, PASSWORD, PATIENT, alices_service, run_clinrisk, service_env

from support import REPO, write_fast_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-e2e")]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def start_chromium(profile: Path) -> webdriver.Chrome:
    """Headless Chromium with its network log on (to see every request the page makes)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1500"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(10)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def logged_in(browser, live_service):
    """The browser after logging in as alice through the login form."""
    log_in(browser, f"{live_service.url}/")
    return browser


def log_in(browser, url: str) -> None:
    """Open `url`, which redirects to the login form, and log in as alice."""
    browser.get(url)
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    browser.find_element(By.ID, "assess")


def fill_patient(browser, patient: dict) -> None:
    for name, value in patient.items():
        element = browser.find_element(By.NAME, name)
        if element.tag_name == "select":
            Select(element).select_by_value(str(value))
        else:
            element.clear()
            element.send_keys(str(value))
    button = browser.find_element(By.ID, "assess")
    button.click()
    # The answer is a new page: wait for the old one to go, so no element of it is used after.
    WebDriverWait(browser, 60).until(expected_conditions.staleness_of(button))


def screenshot(browser, name: str) -> None:
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / name))


def requested_urls(browser) -> list[str]:
    """Every URL the browser requested since the last call (Chrome's performance log)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_a_real_patient_gets_risk_decision_version_and_reasons(logged_in, live_service):
    """Log in, type in the first patient of the file, read the risk, decision, version and reasons."""
    fill_patient(logged_in, PATIENT)
    risk = logged_in.find_element(By.ID, "risk").text
    assert re.fullmatch(r"\d+\.\d %", risk)
    decision = logged_in.find_element(By.ID, "decision").text
    assert decision.startswith(("Flagged", "Not flagged"))
    version = logged_in.find_element(By.ID, "model-version").text
    assert version == live_service_version(live_service)
    reasons = [
        r.get_attribute("data-feature") for r in logged_in.find_elements(By.CSS_SELECTOR, "#reasons .reason")
    ]
    assert len(reasons) == 5 and reasons[0] == "age"
    assert "had a stroke" in logged_in.find_element(By.ID, "holdout-terms").text
    screenshot(logged_in, "patient-page.png")


def live_service_version(service) -> str:
    return requests.get(f"{service.url}/ready", timeout=10).json()["model"]["version"]


def test_an_out_of_range_age_shows_an_error_next_to_the_field(logged_in):
    """Age 130 is refused with the API's message inside the age field's own box."""
    fill_patient(logged_in, {**PATIENT, "age": 130})
    error = logged_in.find_element(By.ID, "age-error")
    assert "less than or equal to 120" in error.text
    box = error.find_element(By.XPATH, "..")
    assert box.find_element(By.ID, "age").get_attribute("value") == "130"
    assert not logged_in.find_elements(By.ID, "answer")


def test_the_card_opens_and_shows_the_slices(logged_in):
    """The model link opens the version's card with the sex and age-band tables and counts."""
    fill_patient(logged_in, PATIENT)
    logged_in.find_element(By.ID, "model-card").click()
    assert re.search(r"/models/stroke/\d+/card$", logged_in.current_url)
    sex = logged_in.find_element(By.CSS_SELECTOR, 'table[data-slice="sex"]')
    ages = logged_in.find_element(By.CSS_SELECTOR, 'table[data-slice="age band"]')
    assert "Female" in sex.text and "Male" in sex.text
    assert all(band in ages.text for band in ("<45", "45-64", "≥65"))
    assert logged_in.find_element(By.CSS_SELECTOR, 'svg[aria-label="Calibration curve"]')
    logged_in.execute_script("document.getElementById('calibration').scrollIntoView()")
    screenshot(logged_in, "model-card.png")


def test_the_page_loads_nothing_from_another_origin(logged_in, live_service):
    """Every request the login, patient, answer and card pages make goes to the service itself."""
    requested_urls(logged_in)  # start from an empty log
    logged_in.get(f"{live_service.url}/")
    fill_patient(logged_in, PATIENT)
    logged_in.find_element(By.ID, "model-card").click()
    logged_in.find_element(By.CSS_SELECTOR, 'table[data-slice="sex"]')
    urls = [u for u in requested_urls(logged_in) if not u.startswith("data:")]
    service = urlsplit(live_service.url)
    assert urls, "the performance log recorded no request"
    assert {(urlsplit(u).scheme, urlsplit(u).netloc) for u in urls} == {(service.scheme, service.netloc)}


def write_fast_diabetes_spec(directory: Path) -> None:
    """A copy of the diabetes spec with one quick candidate and 3 folds, its data path absolute."""
    raw = yaml.safe_load((REPO / "models" / "diabetes.yaml").read_text())
    raw["data"]["path"] = str(REPO / raw["data"]["path"])
    raw["candidates"] = [c for c in raw["candidates"] if c["name"] == "logistic_regression"]
    raw["training"].update(cv_folds=3)
    (directory / "diabetes.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def two_models(e2e_registry, tmp_path_factory):
    """`clinrisk serve` on the e2e registry with stroke and a diabetes champion trained beside it.

    Its specs sit beside the e2e registry's (one signing key per registry); a second Chromium keeps
    its session cookie apart from the first service's (both run on 127.0.0.1).
    """
    specs = e2e_registry["root"] / "browser-specs"
    write_fast_spec(specs)
    write_fast_diabetes_spec(specs)
    trainer = service_env(e2e_registry["root"] / "browser-trainer", specs, e2e_registry["url"])
    run_clinrisk(trainer, "train", "--model", "diabetes")
    home = tmp_path_factory.mktemp("two-models-home")
    with alices_service(home, specs, e2e_registry["url"]) as service:
        service.wait_until_every_worker_serves(["diabetes"])
        driver = start_chromium(tmp_path_factory.mktemp("chromium-two-models"))
        yield service, driver
        driver.quit()


def test_a_second_model_is_assessed_from_its_own_page(two_models):
    """From the stroke page's model list to diabetes: its form, its risk and reasons, and an outcome."""
    service, browser = two_models
    log_in(browser, f"{service.url}/")
    browser.find_element(By.CSS_SELECTOR, '#models a[data-model="diabetes"]').click()
    assert browser.current_url.endswith("/models/diabetes/page")
    assert not browser.find_elements(By.NAME, "gender")
    fill_patient(browser, DIABETIC)
    assert re.fullmatch(r"\d+\.\d %", browser.find_element(By.ID, "risk").text)
    assert browser.find_element(By.ID, "decision").text.startswith(("Flagged", "Not flagged"))
    card = browser.find_element(By.ID, "model-card").get_attribute("href")
    assert re.search(r"/models/diabetes/\d+/card$", card)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#reasons .reason")) == 5
    browser.find_element(By.ID, "outcome-1").click()
    assert "had diabetes onset" in browser.find_element(By.ID, "outcome-recorded").text
    browser.get(f"{service.url}/models/nope/page")
    assert "this service serves stroke, diabetes" in browser.find_element(By.ID, "message").text
