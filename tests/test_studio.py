"""The studio page at / in a real headless Chromium (Debian's chromium and chromium-driver, through
selenium) against the real service process: it loads without console errors, lists the models,
generates with the embedded model, shows the piano roll, the player holds the sequence, downloads,
the curl command reproduces the request, interpolation (results and uploaded MIDI files), call and
response on the on-screen keyboard, and the API's error messages. Screenshots go to the test's
folder (``STUDIO_SCREENSHOTS=docs`` writes the README's picture there instead)."""

import base64
import json
import os
import shlex
import shutil
import time
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from server_support import running_service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1300",
]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """The server with API keys on (API_KEYS_FILE) and one key: the page must work either way, and the
    case with keys covers the case without (the page and its assets need none)."""
    from magenta_api.auth import KeyStore

    tmp = tmp_path_factory.mktemp("studio-server")
    keys = tmp / "keys.json"
    key = KeyStore(keys).add("studio")
    for base in serve(tmp, {"API_KEYS_FILE": str(keys)}):
        yield base, key


@pytest.fixture(scope="module")
def server(keyed):
    return keyed[0]


@pytest.fixture(scope="module")
def api(keyed):
    """requests with the key: what the test compares the page with."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {keyed[1]}"
    return session


def serve(tmp, extra_env):
    """The real service (gunicorn, one worker) on a free port, until the generator is closed."""
    env = {"MODEL_DIR": str(tmp / "models"), "CACHE_DIR": str(tmp / "cache"), **extra_env}
    with running_service(tmp, env) as service:
        yield service.base


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory, downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=ChromeService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    named = os.environ.get("STUDIO_SCREENSHOTS")
    return Path(named) if named else tmp_path_factory.mktemp("screenshots")


def wait(driver, condition, seconds=30):
    return WebDriverWait(driver, seconds).until(condition)


def severe(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def result_text(driver, before=""):
    return wait(driver, lambda d: (t := d.find_element(By.ID, "result-info").text) and t != before and t)


def player_notes(driver):
    return driver.execute_script("return document.getElementById('player').noteSequence.notes.map(n => n.pitch)")


def field(driver, name):
    return driver.find_element(By.CSS_SELECTOR, f"#params [name='{name}']")


def downloaded(folder, suffix, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        files = [p for p in folder.iterdir() if p.suffix == suffix]
        if files and files[0].stat().st_size:
            return files[0]
        time.sleep(0.2)
    raise AssertionError(f"no {suffix} in {sorted(p.name for p in folder.iterdir())}")


def test_the_page_asks_for_a_key_and_remembers_it(keyed, browser):
    base, key = keyed
    d = browser
    d.get(f"{base}/")  # the page and its assets need no key; the API calls do
    d.execute_script("localStorage.clear()")
    d.get(f"{base}/")
    error = wait(d, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error").text)
    assert error.startswith("401 ") and "API key" in error
    d.find_element(By.ID, "api-key").send_keys(key)
    d.execute_script("document.getElementById('api-key').dispatchEvent(new Event('change'))")
    d.get(f"{base}/")  # the key is remembered in localStorage
    wait(d, lambda d: len(Select(d.find_element(By.ID, "model")).options) > 0)
    assert not d.find_element(By.ID, "error").is_displayed()


def test_the_studio_in_a_real_browser(keyed, server, api, browser, downloads, shots, tmp_path):
    d = browser
    d.get(f"{server}/")
    d.execute_script("localStorage.setItem('magenta-api-key', arguments[0])", keyed[1])  # as typed in the field
    d.get_log("browser")  # what came before (the 401s of the page without its key)
    d.get(f"{server}/")
    wait(d, lambda d: len(Select(d.find_element(By.ID, "model")).options) > 0)
    models = api.get(f"{server}/v1/models", timeout=10).json()
    picker = Select(d.find_element(By.ID, "model"))
    assert [o.get_attribute("value") for o in picker.options] == [m["id"] for m in models["models"]]
    assert picker.first_selected_option.get_attribute("value") == models["default_model"] == "embedded-mel_2bar"
    assert "(ready)" in picker.first_selected_option.text
    wait(d, lambda d: "MusicVAE" in d.find_element(By.ID, "model-info").text)
    modes = Select(field(d, "mode"))
    assert [o.text for o in modes.options] == ["sample", "interpolate", "similar", "encode", "decode"]
    assert field(d, "temperature").get_attribute("value") == "0.5"  # the model's default, from the schema form

    # generate with a seed: the page shows what the API answers for the same body
    field(d, "seed").send_keys("11")
    d.find_element(By.ID, "generate").click()
    info = result_text(d)
    expected = api.post(
        f"{server}/v1/generate", json={"model": "embedded-mel_2bar", "mode": "sample", "seed": 11}, timeout=30
    ).json()
    pitches = [n["pitch"] for n in expected["sequences"][0]["notes"]]
    assert f"{len(pitches)} notes, seed 11" in info
    assert player_notes(d) == pitches  # the player holds the sequence
    roll_notes = d.execute_script("return document.querySelectorAll('#roll svg rect[data-pitch]').length")
    assert roll_notes == len(pitches)  # the piano roll shows every note
    d.save_screenshot(str(shots / "studio.png"))

    # the curl command reproduces the request
    curl = d.find_element(By.ID, "curl").text
    args = shlex.split(curl)
    assert args[:3] == ["curl", "-sS", f"{server}/v1/generate"]
    body = json.loads(args[args.index("-d") + 1])
    assert api.post(f"{server}/v1/generate", json=body, timeout=30).json()["sequences"] == expected["sequences"]
    d.find_element(By.ID, "copy-curl").click()
    wait(d, lambda d: d.find_element(By.ID, "copy-curl").text != "Copy curl command")

    # downloads: MIDI, WAV and JSON of the same result
    d.find_element(By.ID, "download-midi").click()
    assert downloaded(downloads, ".mid").read_bytes()[:4] == b"MThd"
    d.find_element(By.ID, "download-wav").click()
    assert downloaded(downloads, ".wav").read_bytes()[:4] == b"RIFF"
    d.find_element(By.ID, "download-json").click()
    assert json.loads(downloaded(downloads, ".json").read_text())["sequences"] == expected["sequences"]
    d.find_element(By.ID, "play-wav").click()
    wait(d, lambda d: d.execute_script("return document.getElementById('wav').src.startsWith('blob:')"))

    # interpolate between two results with the slider
    d.find_element(By.ID, "use-a").click()
    seed = field(d, "seed")
    seed.clear()
    seed.send_keys("12")
    d.find_element(By.ID, "generate").click()
    info = result_text(d, info)
    d.find_element(By.ID, "use-b").click()
    wait(d, lambda d: "seed 12" in d.find_element(By.ID, "slot-b").text)
    Select(d.find_element(By.ID, "interp-model")).select_by_value("embedded-mel_2bar")
    d.find_element(By.ID, "interpolate-go").click()
    wait(d, lambda d: d.find_element(By.ID, "slider").is_enabled())
    points = d.execute_script("return window.studio.interp.sequences.map(s => s.notes.map(n => n.pitch))")
    assert len(points) == 7
    d.execute_script("const s = document.getElementById('slider'); s.value = 3; s.dispatchEvent(new Event('input'))")
    assert d.find_element(By.ID, "slider-value").text == "3 / 6"
    assert player_notes(d) == points[3]
    d.save_screenshot(str(shots / "studio-interpolate.png"))

    # interpolate between two uploaded MIDI files
    for slot, s in (("a", 21), ("b", 22)):
        midi = api.post(
            f"{server}/v1/generate", json={"model": "embedded-mel_2bar", "seed": s, "format": "midi"}, timeout=30
        ).content
        path = tmp_path / f"upload-{slot}.mid"
        path.write_bytes(midi)
        d.find_element(By.ID, f"file-{slot}").send_keys(str(path))
        wait(d, lambda d, slot=slot: f"upload-{slot}.mid" in d.find_element(By.ID, f"slot-{slot}").text)
    d.find_element(By.ID, "interpolate-go").click()
    wait(d, lambda d: d.execute_script("return window.studio.body.inputs[0].length > 0 && "
                                       "typeof window.studio.body.inputs[0] === 'string'"))  # fmt: skip
    uploaded = api.post(
        f"{server}/v1/generate",
        json={
            "model": "embedded-mel_2bar",
            "mode": "interpolate",
            "num_outputs": 7,
            "seed": 0,
            "inputs": [base64.b64encode((tmp_path / f"upload-{x}.mid").read_bytes()).decode() for x in "ab"],
        },
        timeout=30,
    ).json()
    wait(d, lambda d: d.execute_script("return window.studio.interp.sequences[6].notes.map(n => n.pitch)")
         == [n["pitch"] for n in uploaded["sequences"][6]["notes"]])  # fmt: skip

    # call and response: a phrase on the on-screen keyboard, continued by an RNN model
    d.find_element(By.ID, "clear-phrase").click()
    for pitch in (60, 62, 64, 65, 67):
        key = d.find_element(By.CSS_SELECTOR, f"#keyboard [data-pitch='{pitch}']")
        ActionChains(d).click_and_hold(key).pause(0.15).release(key).perform()
    assert d.find_element(By.ID, "phrase-info").text == "5 notes"
    Select(d.find_element(By.ID, "call-model")).select_by_value("embedded-basic_rnn")
    d.find_element(By.ID, "respond").click()
    info = wait(d, lambda d: "continue" in d.find_element(By.ID, "result-info").text and d.find_element(
        By.ID, "result-info").text)  # fmt: skip
    played = player_notes(d)
    assert played[:5] == [60, 62, 64, 65, 67] and len(played) > 5  # the phrase, then the model's answer
    d.save_screenshot(str(shots / "studio-call-and-response.png"))

    assert severe(d) == []  # no console errors in everything above

    # errors are the API's messages
    Select(d.find_element(By.ID, "model")).select_by_value("embedded-mel_2bar")
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#params [name='temperature']")) == 1)
    time.sleep(0.3)
    temperature = field(d, "temperature")
    temperature.clear()
    temperature.send_keys("1000")
    d.find_element(By.ID, "generate").click()
    error = wait(d, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error").text)
    api = api.post(f"{server}/v1/generate", json={"model": "embedded-mel_2bar", "temperature": 1000}, timeout=30)
    assert error == f"400 {api.json()['error']['code']}: {api.json()['error']['message']}"
    d.save_screenshot(str(shots / "studio-error.png"))
    assert "Authorization: Bearer $MAGENTA_API_KEY" in curl
    logged = severe(d)  # only the refused request itself, as the network log reports it
    assert len(logged) == 1 and "status of 400" in logged[0]["message"] and logged[0]["source"] == "network"
    assert all((shots / n).stat().st_size > 10_000 for n in ("studio.png", "studio-interpolate.png"))


def test_every_asset_is_served_by_the_service(server):
    page = requests.get(f"{server}/", timeout=10)
    assert page.ok and "text/html" in page.headers["Content-Type"]
    assert "http://" not in page.text.replace(server, "") and "https://" not in page.text  # no CDN
    for asset in ("vendor/Tone.js", "vendor/core.js", "vendor/midi-player.min.js", "studio/studio.js"):
        assert requests.get(f"{server}/static/{asset}", timeout=10).ok, asset
