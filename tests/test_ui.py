"""The web page (python -m vidstyleode_jax.ui) on the session's tiny demo run (conftest.demo_run).

The page's handlers call the same apps/session.Session methods as the command line, so a result of the page equals
the command's output for the same inputs: compared frame for frame (the raw float32 frames and the decoded mp4s),
in process and through a real browser. The browser is Debian's Chromium (/usr/bin/chromium, installed by .ci/run),
driven by Playwright against a server subprocess on 127.0.0.1; no browser is downloaded.
"""

import os
import subprocess
import sys
import time
import urllib.request

import gradio as gr
import numpy as np
import pytest
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright

from tests.conftest import REPO
from tests.conftest import free_port
from vidstyleode_jax import ui
from vidstyleode_jax import video_io
from vidstyleode_jax.apps import __main__ as cli
from vidstyleode_jax.apps import session as session_lib
from vidstyleode_jax.apps import trained_run

CHROMIUM = "/usr/bin/chromium"
TARGET = "a bluish figure swaying slowly"
SERVER_START_S = 180
RESULT_S = 240


class Page:
  """The page's handlers in this process, its demo examples, and the command line's outputs for the same inputs."""

  def __init__(self, demo_run, folder):
    self.workdir, self.folder = demo_run.workdir, folder
    self.examples = ui.demo_examples(demo_run.workdir, str(folder / "examples"))
    (folder / "outputs").mkdir()
    session = session_lib.Session(trained_run.load(demo_run.workdir), progress=False)
    self.handlers = ui.Handlers(session, str(folder / "outputs"))
    self.strength = session.run.config.loss.manipulation_strength
    self._cli = {}

  def cli(self, command, *flags):
    """(raw frames [N, H, W, 3] float32, decoded mp4 frames) of `apps COMMAND --workdir RUN FLAGS`, run once."""
    key = (command, *flags)
    if key not in self._cli:
      stem = str(self.folder / f"cli_{len(self._cli)}")
      assert cli.main([command, "--workdir", self.workdir, *flags, "--output", f"{stem}.mp4", "--save-frames",
                       f"{stem}.npy", "--no-progress"]) == 0
      self._cli[key] = np.load(f"{stem}.npy"), video_io.read_video(f"{stem}.mp4")[0]
    return self._cli[key]

  def cli_edit(self):
    example = self.examples[0]
    return self.cli("edit", "--video", example["video"], "--inversions", example["inversions"], "--source",
                    example["text"], "--target", TARGET)


@pytest.fixture(scope="module")
def page(demo_run, tmp_path_factory):
  return Page(demo_run, tmp_path_factory.mktemp("ui"))


def assert_same_as_cli(raw_path, mp4_path, cli_output):
  raw, decoded = cli_output
  np.testing.assert_array_equal(np.load(raw_path), raw)
  np.testing.assert_array_equal(video_io.read_video(mp4_path)[0], decoded)


def test_page_results_equal_the_command_line(page):
  example, other = page.examples[0], page.examples[1]
  compare, (mp4, raw) = page.handlers.edit(example["video"], example["inversions"], example["text"], TARGET,
                                           page.strength)
  assert_same_as_cli(raw, mp4, page.cli_edit())
  assert os.path.basename(compare) == "edit_compare.mp4"
  _, (mp4, raw) = page.handlers.transfer_motion(example["video"], example["inversions"], other["video"],
                                                example["left_half"])
  assert_same_as_cli(raw, mp4, page.cli("transfer-motion", "--video", example["video"], "--inversions",
                                        example["inversions"], "--driving", other["video"], "--region",
                                        example["left_half"]))


@pytest.mark.parametrize("call, message", [
    (lambda h, e: h.edit(e["video"], e["inversions"], e["text"], "  ", 1.0), "--target is empty"),
    (lambda h, e: h.transfer_motion(e["video"], e["inversions"], e["video"], "10,10,40,20"),
     "--region 10,10,40,20 is outside the 32x32 frame"),
    (lambda h, e: h.extrapolate(None, e["inversions"], 1.0), "No video"),
])
def test_bad_input_is_a_page_error(page, call, message):
  with pytest.raises(gr.Error, match=message):
    call(page.handlers, page.examples[0])


def test_two_clicks_on_the_first_frame_select_the_region_between_them():
  frame = np.full((32, 16, 3), 90, np.uint8)  # enlarged 8x: 256 // 32
  click = lambda x, y: gr.SelectData(None, {"index": [x, y], "value": None})
  region, corner = ui.region_click(frame, None, click(8 * 10 + 7, 8 * 3))
  assert (region, corner) == ("10,3,11,4", (10, 3))
  region, corner = ui.region_click(frame, corner, click(8 * 2, 8 * 20 + 1))
  assert (region, corner) == ("2,3,11,21", None)
  preview = ui.region_preview(frame, region)
  assert preview.shape == (256, 128, 3)
  expected = np.full((32, 16), 90 // ui.OUTSIDE_REGION_SHADE, np.uint8)
  expected[3:21, 2:11] = 90
  np.testing.assert_array_equal(preview[::8, ::8, 0], expected)
  np.testing.assert_array_equal(ui.region_preview(frame, "0,0,99,99"), np.full((256, 128, 3), 90, np.uint8))


@pytest.fixture
def server(page, tmp_path):
  """The page served by `python -m vidstyleode_jax.ui` in a subprocess: its URL."""
  port = free_port()
  log_path = tmp_path / "server.log"
  env = dict(os.environ, GRADIO_TEMP_DIR=str(tmp_path / "gradio"), GRADIO_ANALYTICS_ENABLED="False")
  with open(log_path, "w") as log:
    process = subprocess.Popen([sys.executable, "-m", "vidstyleode_jax.ui", "--workdir", page.workdir, "--port",
                                str(port), "--cache", str(tmp_path / "cache")], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
  url = f"http://127.0.0.1:{port}/"
  try:
    deadline = time.monotonic() + SERVER_START_S
    while True:
      assert process.poll() is None, f"the server exited: {log_path.read_text()[-3000:]}"
      try:
        urllib.request.urlopen(url, timeout=5).close()
        break
      except OSError:
        assert time.monotonic() < deadline, f"no page at {url} after {SERVER_START_S} s: {log_path.read_text()}"
        time.sleep(1)
    yield url
  finally:
    process.terminate()
    process.wait(timeout=30)


def fetch(url, path):
  with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as f:
    f.write(response.read())
  return str(path)


def run_tab(browser_page, name, previous_src=None):
  """Clicks the tab's run button and waits for a new output video; returns its src URL."""
  browser_page.click(f"#{name}-run")
  browser_page.wait_for_function(
      "([selector, old]) => { const v = document.querySelector(selector); return v && v.src && v.src !== old; }",
      arg=[f"#{name}-output video", previous_src], timeout=RESULT_S * 1000)
  return browser_page.get_attribute(f"#{name}-output video", "src")


def pick_example(browser_page, name, row, field, value):
  """Clicks an example row and waits until the input at the selector `field` shows the example's `value`."""
  browser_page.locator(f"#{name}-examples tbody tr").nth(row).click()
  expect(browser_page.locator(field)).to_have_value(value)


def frame_count(url, path):
  return video_io.read_video(fetch(url, path))[0].shape[0]


@pytest.mark.slow
def test_in_a_browser(page, server, tmp_path, demo_run):
  if not os.path.exists(CHROMIUM):
    pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium), as .ci/run does")
  frames = demo_run.config.data.frames_per_video
  garbage = tmp_path / "garbage.mp4"
  garbage.write_bytes(b"this is not a video" * 100)
  with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
      browser_page = browser.new_page(viewport={"width": 1280, "height": 900})
      browser_page.goto(server)

      pick_example(browser_page, "edit", 0, "#edit-target textarea", page.examples[0]["text"])
      assert browser_page.input_value("#edit-source textarea") == page.examples[0]["text"]
      browser_page.fill("#edit-target textarea", TARGET)
      src = run_tab(browser_page, "edit")
      assert frame_count(src, tmp_path / "shown.mp4") == frames
      links = [browser_page.locator("#edit-files a").nth(k).get_attribute("href") for k in range(2)]
      mp4, raw = sorted(links, key=lambda link: not link.split("?")[0].endswith(".mp4"))
      assert_same_as_cli(fetch(raw, tmp_path / "page.npy"), fetch(mp4, tmp_path / "page.mp4"), page.cli_edit())
      browser_page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)

      browser_page.get_by_role("tab", name="Interpolate").click()
      pick_example(browser_page, "interpolate", 0, "#interpolate-fps input", f"{2 * ui.EXAMPLE_FPS:g}")
      interpolated = run_tab(browser_page, "interpolate")
      assert frame_count(interpolated, tmp_path / "interpolated.mp4") == 2 * frames - 1  # 2x the fps, both ends
      browser_page.screenshot(path=str(tmp_path / "interpolate.png"), full_page=True)

      browser_page.get_by_role("tab", name="Edit").click()
      browser_page.click("#edit-video button[aria-label=Clear]")
      browser_page.set_input_files("#edit-video input[type=file]", str(garbage))
      browser_page.locator('#edit-video video[src*="garbage.mp4"]').wait_for(state="attached")
      browser_page.click("#edit-run")
      browser_page.get_by_text("Could not read video").first.wait_for(timeout=RESULT_S * 1000)
      pick_example(browser_page, "edit", 1, "#edit-target textarea", page.examples[1]["text"])
      browser_page.fill("#edit-target textarea", TARGET)
      assert frame_count(run_tab(browser_page, "edit", src), tmp_path / "after_error.mp4") == frames
    finally:
      browser.close()
