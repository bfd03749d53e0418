"""The review page in a real headless browser (Debian's ``chromium``, driven by Playwright): a
``register`` run of sample_data/scenes plus one file that is no photo; every frame is shown by the
flip-book (stepping and playing), the onion-skin and difference views compare with the reference,
the skipped file is listed with its reason, one frame is marked "exclude", the marks are saved (a
download), remembered across a reload, read back with ``read_exclusions`` and used by
``animate --exclude``.

Without a browser these tests fail in CI (CI=true); elsewhere they are skipped with the reason.
``.ci/run`` installs chromium when it is missing; ``ALIGNIMATE_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from alignimate.cli import app
from alignimate.pipeline.exclusions import read_exclusions
from alignimate.pipeline.review import DEFAULT_MAX_SIDE

ROOT = Path(__file__).resolve().parents[2]
SCENES = ROOT / "sample_data" / "scenes"
runner = CliRunner()


def _missing(what: str) -> None:
    """Fail in CI (a missing browser must not pass silently there), skip elsewhere, with the reason."""
    message = f"{what}; install it (apt-get install -y chromium; pip install -e '.[dev]') to test the page"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


def _chromium() -> str:
    named = os.environ.get("ALIGNIMATE_CHROMIUM")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            _missing(f"$ALIGNIMATE_CHROMIUM={named} is not an executable file")
        return named
    for candidate in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found:
            return found
    _missing("no chromium binary on PATH (nor $ALIGNIMATE_CHROMIUM)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package (dev extra) is not installed")
    executable = _chromium()
    with sync_playwright() as driver:
        # As root Chromium refuses to start without --no-sandbox.
        launched = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """register on the ten sample scenes and one broken file, then ``alignimate review``."""
    root = tmp_path_factory.mktemp("review_browser")
    photos = root / "photos"
    shutil.copytree(SCENES, photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    out = root / "aligned"
    result = runner.invoke(app, ["register", str(photos), "--out", str(out), "--size", "256", "-q"])
    assert result.exit_code == 1, result.output  # broken.jpg is skipped, the scenes are written
    result = runner.invoke(app, ["review", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "transforms.json").read_text())


@pytest.fixture
def page(browser: Any, scenes_run: tuple[Path, dict]) -> Iterator[Any]:
    out, _ = scenes_run
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda err: errors.append(str(err)))
    requests: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    tab.goto((out / "review.html").as_uri())
    tab.wait_for_selector("body[data-ready=true]", timeout=15_000)
    yield tab
    assert errors == [], errors
    # Nothing but the page itself (and its data: / blob: URLs) is ever requested.
    assert [u for u in requests if not u.startswith(("data:", "blob:", "file:"))] == []
    context.close()


def kept_names(run: dict) -> list[str]:
    return [p["name"] for p in run["photos"] if p["output"]]


def decode(uri: str) -> np.ndarray:
    head, data = uri.split(",", 1)
    assert head == "data:image/jpeg;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), dtype=int)


def test_stepping_shows_every_frame_in_order_with_its_details(page: Any, scenes_run) -> None:
    out, run = scenes_run
    names = kept_names(run)
    records = {p["name"]: p for p in run["photos"]}
    assert len(names) == 10
    seen = []
    for step in range(len(names) + 1):  # one more: the flip-book wraps round to the first frame
        name = page.text_content("#frame-name")
        seen.append(name)
        assert page.text_content("#position-label") == f"{step % len(names) + 1} / {len(names)}"
        record = records[name]
        assert page.text_content("#frame-status").startswith(record["status"])
        loss = page.text_content("#frame-loss")
        if record["loss"] is None:
            assert loss == "\u2014"
        else:
            assert float(loss) == pytest.approx(record["loss"], rel=1e-3, abs=1e-9)
        shown = decode(page.get_attribute("#frame-img", "src"))
        # The image on screen is that photo's frame, shrunk to the page's bound.
        with Image.open(out / record["output"]) as frame:
            frame.thumbnail((DEFAULT_MAX_SIDE, DEFAULT_MAX_SIDE), Image.LANCZOS)
            expected = np.asarray(frame.convert("RGB"), dtype=int)
        assert shown.shape == expected.shape and max(shown.shape[:2]) <= DEFAULT_MAX_SIDE
        assert np.abs(shown - expected).mean() < 4, name
        page.click("#next")
    assert seen == [*names, names[0]]


def test_playing_shows_every_frame_and_pause_stops(page: Any, scenes_run) -> None:
    _, run = scenes_run
    names = kept_names(run)
    page.evaluate(
        """() => {
            window.__shown = [];
            const label = document.getElementById('frame-name');
            new MutationObserver(() => window.__shown.push(label.textContent))
                .observe(label, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.select_option("#speed", "48")
    page.click("#play")
    assert page.text_content("#play") == "Pause"
    page.wait_for_function(f"() => new Set(window.__shown).size >= {len(names)}", timeout=10_000)
    page.click("#play")
    assert page.text_content("#play") == "Play"
    shown = page.evaluate("() => window.__shown")
    assert set(shown) == set(names)
    for before, after in itertools.pairwise(shown):  # played in order, one frame at a time
        assert names.index(after) == (names.index(before) + 1) % len(names)
    still = page.text_content("#frame-name")
    page.wait_for_timeout(300)
    assert page.text_content("#frame-name") == still


def canvas_mean(page: Any) -> float:
    return page.evaluate(
        """() => {
            const c = document.getElementById('diff-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let sum = 0;
            for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
            return sum / (d.length / 4 * 3);
        }"""
    )


def test_onion_skin_and_difference_compare_with_the_reference(page: Any, scenes_run) -> None:
    _, run = scenes_run
    names = kept_names(run)
    reference = run["reference"]
    assert reference in page.text_content("#reference-note")
    page.select_option("#mode", "onion")
    assert page.is_visible("#ref-img") and not page.is_visible("#diff-canvas")
    assert page.evaluate("() => getComputedStyle(document.getElementById('frame-img')).opacity") == "0.5"
    page.select_option("#mode", "difference")
    assert page.is_visible("#diff-canvas") and not page.is_visible("#ref-img")
    means = {}
    for name in names:
        page.fill("#position", str(names.index(name)))  # the range input: jump to the frame
        drawn = f"() => document.getElementById('diff-canvas').dataset.frame === {json.dumps(name)}"
        page.wait_for_function(drawn)
        means[name] = canvas_mean(page)
    # The reference differs from itself nowhere; every other (differently exposed) frame somewhere.
    assert means[reference] == 0
    assert all(means[n] > 1 for n in names if n != reference), means
    page.check("#amplify")
    page.wait_for_timeout(200)
    other = names[-1]
    assert page.evaluate("() => document.getElementById('diff-canvas').dataset.frame") == other
    assert canvas_mean(page) > 2 * means[other]


def test_skipped_photo_is_listed_with_its_reason(page: Any, scenes_run) -> None:
    _, run = scenes_run
    skipped = [p for p in run["photos"] if p["status"] == "skipped"]
    assert [p["name"] for p in skipped] == ["broken.jpg"]
    text = page.text_content("#others")
    assert "broken.jpg" in text and skipped[0]["reason"] in text
    assert page.text_content("#others-heading") == "Skipped photos (1)"


def test_an_exclusion_is_saved_remembered_and_used_by_animate(page: Any, scenes_run, tmp_path: Path) -> None:
    out, run = scenes_run
    names = kept_names(run)
    target = names[3]
    page.click(f'#frames-table tbody tr[data-name="{target}"]')  # jump there from the frame list
    assert page.text_content("#frame-name") == target
    page.check("#exclude")
    assert page.text_content("#excluded-count") == f"1 of {len(names)} frames excluded"
    assert "excluded" in (page.get_attribute(f'#frames-table tbody tr[data-name="{target}"]', "class") or "")
    with page.expect_download() as caught:
        page.click("#save")
    download = caught.value
    assert download.suggested_filename == "aligned-exclusions.json"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert read_exclusions(saved) == frozenset({target})
    assert json.loads(saved.read_text())["output"] == str(out.resolve())

    # The marks survive a reload (localStorage), and playing can step over them.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.is_checked(f'#frames-table tbody tr[data-name="{target}"] input')
    assert page.text_content("#excluded-count") == f"1 of {len(names)} frames excluded"
    page.check("#skip-excluded")
    page.select_option("#speed", "48")
    page.evaluate(
        """() => {
            window.__shown = [];
            const label = document.getElementById('frame-name');
            new MutationObserver(() => window.__shown.push(label.textContent))
                .observe(label, {childList: true});
        }"""
    )
    page.click("#play")
    page.wait_for_function("() => window.__shown.length >= 25", timeout=10_000)
    page.click("#play")
    assert set(page.evaluate("() => window.__shown")) == set(names) - {target}

    # animate --exclude leaves exactly that frame out.
    full, fewer = tmp_path / "all.gif", tmp_path / "fewer.gif"
    for gif, extra in ((full, []), (fewer, ["--exclude", str(saved)])):
        args = ["animate", str(out), "-o", str(gif), "--max-width", "96", "--fps", "5", *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    with Image.open(full) as a, Image.open(fewer) as b:
        assert (a.n_frames, b.n_frames) == (len(names), len(names) - 1)


def test_keyboard_steps_plays_and_marks(page: Any, scenes_run) -> None:
    _, run = scenes_run
    names = kept_names(run)
    page.click("h1")  # focus on the page, not on a control
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.text_content("#frame-name") == names[2]
    page.keyboard.press("ArrowLeft")
    assert page.text_content("#frame-name") == names[1]
    page.keyboard.press("x")
    assert page.is_checked("#exclude")
    assert page.text_content("#excluded-count") == f"1 of {len(names)} frames excluded"
    page.keyboard.press("x")
    assert not page.is_checked("#exclude")
    page.keyboard.press(" ")
    assert page.text_content("#play") == "Pause"
    page.keyboard.press(" ")
    assert page.text_content("#play") == "Play"
