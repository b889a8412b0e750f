"""Headless-Chromium screenshots of a report, and how many pixels of the claims table's verdict cells one shows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat  # noqa: F401  (re-exported for the tests)

from lmscalpel.report.render import VERDICT_COLOURS


def screenshot(page: Path, shot: Path, size: tuple[int, int], profile: Path) -> Image.Image:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian package chromium not installed (.ci/run installs it)")
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    assert image.size == size
    return image


def verdict_pixels(image: Image.Image) -> int:
    """Pixels painted in one of the verdict backgrounds (colours used only by the claims table)."""
    colours = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in VERDICT_COLOURS.values()}
    return sum(count for count, colour in image.getcolors(maxcolors=1 << 24) if colour in colours)
