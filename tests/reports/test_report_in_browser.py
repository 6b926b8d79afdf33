"""report.html opened in headless Chromium: every embedded figure decodes and the table is there.

Chromium comes from Debian's packages. When it is missing the fixture installs it (as root, with
apt-get); it skips only where that is impossible, and never under CI=true, where it fails instead.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fbl.cli import main

# Runs on `load`, i.e. after every <img> has finished loading or failed; writes its verdict into the
# DOM because --dump-dom is the only channel back from a plain `chromium --headless` call.
PROBE = """<script>
addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.setAttribute("data-check", JSON.stringify({
    images: images.length,
    decoded: images.filter((img) => img.complete && img.naturalWidth > 0).length,
    tables: document.querySelectorAll("table").length,
  }));
});
</script>"""

# A truncated PNG: the browser must report it as not decoded, else the probe proves nothing.
BROKEN_IMG = '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA" alt="broken">'

# Without the network/component flags Chromium tries to reach Google and the dump stalls; as root it
# refuses to start without --no-sandbox; a container's /dev/shm is often too small for it.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=5000",
]


def _apt_get(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, timeout=timeout, env=env)


def _install_chromium() -> str:
    """Tries ``apt-get install chromium``; returns why it did not work, or "" when it did."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "installing it needs root"
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    try:
        done = _apt_get("install", "-y", "-qq", "chromium", timeout=900)
        if done.returncode != 0:  # a fresh machine has no package lists yet
            update = _apt_get("update", "-qq", timeout=300)
            if update.returncode != 0:
                return f"apt-get update failed: {update.stderr.strip()[-300:]}"
            done = _apt_get("install", "-y", "-qq", "chromium", timeout=900)
    except subprocess.TimeoutExpired as error:
        return f"{' '.join(error.cmd)} timed out after {error.timeout:.0f} s"
    if done.returncode != 0:
        return f"apt-get install chromium failed: {done.stderr.strip()[-300:]}"
    return ""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        reason = _install_chromium()
        found = shutil.which("chromium")
        if found is None:
            reason = reason or "apt-get installed it but `chromium` is not on PATH"
            message = f"Chromium is not installed and could not be installed: {reason}"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{message}; CI must provide it", pytrace=False)
            pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser_runs")
    for loss in ("ce", "fbl"):
        argv = ["train", "--loss", loss, "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(root / loss)]
        assert main(argv) == 0
    assert main(["report", str(root / "ce"), str(root / "fbl"), "--out", str(root / "report")]) == 0
    return root / "report" / "report.html"


def check_in_browser(chromium: str, page: str, workdir: Path) -> dict:
    """Opens ``page`` (html text) with the probe injected and returns the probe's verdict."""
    assert page.count("</body>") == 1
    probed = workdir / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    argv = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}", "--dump-dom", probed.as_uri()]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"Chromium did not finish within 60 s; stderr ends:\n{_tail(error.stderr)}", pytrace=False)
    found = re.search(r'<body[^>]*\sdata-check="([^"]*)"', done.stdout)
    if done.returncode != 0 or found is None:
        pytest.fail(
            f"Chromium exited {done.returncode} without the probe's verdict; stderr ends:\n{_tail(done.stderr)}",
            pytrace=False,
        )
    return json.loads(html.unescape(found.group(1)))


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    if isinstance(text, bytes):  # TimeoutExpired keeps the partial output as bytes even with text=True
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def test_report_images_decode_and_table_renders(chromium, report_html, tmp_path):
    verdict = check_in_browser(chromium, report_html.read_text(encoding="utf-8"), tmp_path)
    assert verdict["images"] >= 5, verdict
    assert verdict["decoded"] == verdict["images"], verdict
    assert verdict["tables"] >= 1, verdict


def test_probe_notices_a_broken_image(chromium, report_html, tmp_path):
    page = report_html.read_text(encoding="utf-8").replace("</body>", BROKEN_IMG + "</body>")
    verdict = check_in_browser(chromium, page, tmp_path)
    assert verdict["decoded"] == verdict["images"] - 1, verdict
