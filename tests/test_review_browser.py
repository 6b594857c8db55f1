"""The review page in a real headless browser (Debian's chromium + chromedriver).

``mtmc review``'s server runs in a thread on a copy of a short sample run; selenium
drives the system chromium through /usr/bin/chromedriver (Selenium Manager is never
asked to download anything). The page is clicked like an operator would: cards are
counted against the store, two identities merged, a tracklet split off and the split
undone; ``mtmc review --export`` must then change the CSV's ids exactly so.
Skips (saying why) only where chromium, its driver or selenium is missing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.export.store import STORE_NAME
from tests.conftest import REPO
from tests.test_store import _csv_rows

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _driver_or_skip():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: install Debian's chromium and "
                    "chromium-driver (apt-get install chromium chromium-driver; .ci/run does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _driver_or_skip()
    yield driver
    driver.quit()


@pytest.fixture
def page(sample_store_run, tmp_path, browser):
    """A copy of the sample run served on a free port: ``(run_dir, driver, server)``."""
    from pipeline.review import make_server

    out = tmp_path / "run"
    shutil.copytree(sample_store_run[0], out)
    server = make_server(out, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    browser.get(server.url)
    _wait_loaded(browser, 1)
    yield out, browser, server
    server.shutdown()
    server.server_close()


def _wait_loaded(driver, count: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(
        lambda d: int(d.find_element("tag name", "body").get_attribute("data-loaded") or 0)
        >= count, message=f"page load #{count}")


def _click(driver, element) -> None:
    """Scroll ``element`` to the middle of the window (clear of the sticky header), click."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _cards(driver) -> list[int]:
    return [int(c.get_attribute("data-id")) for c in driver.find_elements("css selector",
                                                                           ".card")]


def _export(out: Path) -> list[tuple]:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "review", str(out),
                             "--export"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return _csv_rows(out / "trajectories_reviewed.csv")


def test_page_shows_one_card_per_identity_with_crops(page):
    out, driver, _ = page
    with sqlite3.connect(out / STORE_NAME) as db:
        ids = sorted(g for g, in db.execute(
            "SELECT DISTINCT global_id FROM tracklets WHERE global_id >= 0"))
        crops = db.execute("SELECT COUNT(*) FROM tracklets WHERE global_id >= 0 AND "
                           "crop_jpeg IS NOT NULL").fetchone()[0]
    assert ids == sorted({r[3] for r in _csv_rows(out / "trajectories.csv")})
    assert sorted(_cards(driver)) == ids
    images = driver.find_elements("css selector", ".card figure.tracklet img")
    assert len(images) == crops > 0
    from selenium.webdriver.support.ui import WebDriverWait

    # crops load lazily (a long run has thousands); load them all, then count decoded ones
    driver.execute_script("for (const i of document.images) i.loading = 'eager';")
    decoded = ("return [...document.images].filter(i => i.complete && i.naturalWidth > 0)"
               ".length")
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(decoded) == crops,
                                    message="every crop decoded by the browser")
    assert driver.find_elements("css selector", ".timeline .span")

    # sort by cameras (default): non-increasing camera count; search by id
    counts = [len(c.find_elements("css selector", ".cam-row"))
              for c in driver.find_elements("css selector", ".card")]
    assert counts == sorted(counts, reverse=True)
    search = driver.find_element("id", "search")
    search.send_keys(str(ids[-1]))
    assert _cards(driver) == [ids[-1]]
    search.send_keys("\ue003" * len(str(ids[-1])))  # backspace: the "input" event fires
    assert len(_cards(driver)) == len(ids)


def test_merge_through_the_page_changes_exactly_those_ids(page):
    out, driver, _ = page
    original = _csv_rows(out / "trajectories.csv")
    ids = sorted(_cards(driver))
    keep, absorb = ids[1], ids[-1]
    for gid in (absorb, keep):
        _click(driver, driver.find_element("css selector",
                                           f'.card[data-id="{gid}"] input.pick'))
    merge = driver.find_element("id", "merge")
    assert merge.text == f"Merge {absorb} into {keep}"
    _click(driver, merge)
    _wait_loaded(driver, 2)
    assert sorted(_cards(driver)) == [g for g in ids if g != absorb]
    assert "merged" in driver.find_element("id", "status").text

    reviewed = _export(out)
    assert [r[3] for r in reviewed] == [keep if r[3] == absorb else r[3] for r in original]
    assert [r[:3] + r[4:] for r in reviewed] == [r[:3] + r[4:] for r in original]
    assert sum(r[3] == absorb for r in original) > 0


def test_split_and_undo_through_the_page(page):
    out, driver, _ = page
    original = _csv_rows(out / "trajectories.csv")
    before = sorted(_cards(driver))
    button = driver.find_elements("css selector", "button.split")[0]
    camera, track = button.get_attribute("data-camera"), int(button.get_attribute("data-track"))
    _click(driver, button)
    _wait_loaded(driver, 2)
    new_id = max(before) + 1
    assert sorted(_cards(driver)) == before + [new_id]
    card = driver.find_element("css selector", f'.card[data-id="{new_id}"]')
    figures = card.find_elements("css selector", "figure.tracklet")
    assert [(f.get_attribute("data-camera"), int(f.get_attribute("data-track")))
            for f in figures] == [(camera, track)]
    reviewed = _export(out)
    assert [r[3] for r in reviewed] == [new_id if (r[0], r[4]) == (camera, track) else r[3]
                                        for r in original]

    _click(driver, driver.find_element("css selector", "#corrections-box summary"))
    _click(driver, driver.find_element("css selector", "#corrections button.undo"))
    _wait_loaded(driver, 3)
    assert sorted(_cards(driver)) == before
    assert driver.find_elements("css selector", "#corrections li.undone")
    assert _export(out) == original  # undone: the reviewed CSV is the run's CSV


def test_find_similar_shows_the_tracks_most_like_one(page):
    from pipeline.export.store_read import open_run
    from pipeline.search import similar_tracks

    out, driver, _ = page
    with open_run(out) as store:
        keys, _ = store.embeddings()
        camera, track = keys[0]
        expected = similar_tracks(store, camera, track, top=12)
        all_cards = len(store.identities())
    button = driver.find_element(
        "css selector", f'button.similar[data-camera="{camera}"][data-track="{track}"]')
    _click(driver, button)
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 20).until(
        lambda d: "most like" in d.find_element("id", "status").text, message="similar")
    best: dict[int, float] = {}
    for m in expected:
        best[m.global_id] = max(best.get(m.global_id, -2.0), m.similarity)
    shown = _cards(driver)
    assert set(shown) == set(best) and len(shown) < all_cards  # only the matches' cards
    assert [best[i] for i in shown] == sorted(best.values(), reverse=True)
    marked = {(f.get_attribute("data-camera"), int(f.get_attribute("data-track")))
              for f in driver.find_elements("css selector", "figure.match")}
    assert marked == {(m.camera, m.track_id) for m in expected}
    _click(driver, driver.find_element("id", "clear-similar"))
    assert len(_cards(driver)) == all_cards


def test_floor_view_draws_each_identity_path_over_the_plan(calibrated_sample_run, tmp_path,
                                                            browser):
    """A run with two calibrated cameras and a floor plan: one path per identity with
    floor positions, placed by the plan's scale; a card's "floor" button highlights its
    identity's path; the uncalibrated sample run shows no floor view."""
    from pipeline.export.store_read import open_run
    from pipeline.review import make_server

    out = tmp_path / "run"
    shutil.copytree(calibrated_sample_run[0], out)
    with open_run(out) as store:
        paths = {g: p for g, p in store.floor_paths().items() if g >= 0}
    assert len(paths) >= 3
    server = make_server(out, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(server.url)
        _wait_loaded(browser, 1)
        box = browser.find_element("id", "floor-box")
        assert box.is_displayed()
        _click(browser, box.find_element("tag name", "summary"))
        lines = browser.find_elements("css selector", "#floor polyline")
        assert sorted(int(p.get_attribute("data-id")) for p in lines) == sorted(paths)
        # the plan: 400 x 220 px at 10 px/m with origin (-1, -1) m
        assert browser.execute_script(
            "return document.getElementById('floor').getAttribute('viewBox')") == "0 0 400 220"
        assert browser.execute_script(
            "const i = document.querySelector('#floor image');"
            "return fetch(i.getAttribute('href')).then(r => r.ok && r.headers.get("
            "'content-type'))") == "image/png"
        gid = max(paths, key=lambda g: len(paths[g]["t"]))
        first = browser.find_element("css selector", f'#floor polyline[data-id="{gid}"]')
        x, y = (float(v) for v in first.get_attribute("points").split()[0].split(","))
        assert (x, y) == pytest.approx(((paths[gid]["x"][0] + 1) * 10,
                                        (paths[gid]["y"][0] + 1) * 10), abs=0.05)
        _click(browser, browser.find_element("css selector",
                                             f'.card[data-id="{gid}"] button.floor'))
        classes = {int(p.get_attribute("data-id")): p.get_attribute("class")
                   for p in browser.find_elements("css selector", "#floor polyline")}
        assert classes[gid] == "focus" and all(c == "dim" for g, c in classes.items()
                                               if g != gid)
        _click(browser, browser.find_element("id", "floor-all"))
        assert not browser.find_elements("css selector", "#floor polyline.dim")
    finally:
        server.shutdown()
        server.server_close()


def test_no_floor_view_without_calibrated_cameras(page):
    _, driver, _ = page
    assert not driver.find_element("id", "floor-box").is_displayed()
    assert not driver.find_elements("css selector", "button.floor")
