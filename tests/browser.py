"""Render an HTML file in headless Chromium (Debian's ``chromium``, installed by
``scripts/install-chromium.sh``): a screenshot PNG and the DOM after rendering.

Skips when no Chromium is installed, fails instead when ``LINEAGE_REQUIRE_SERVICES=1`` (CI).
Each run gets its own profile directory, and the page is opened from a ``file://`` URL with
networking disabled, so a page that needed the network would show it.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARIES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Rendered:
    screenshot: Path
    dom: str


def chromium() -> str:
    """The browser's path, or skip (fail under ``LINEAGE_REQUIRE_SERVICES=1``)."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    message = "no chromium on PATH: run scripts/install-chromium.sh (as root)"
    if os.environ.get("LINEAGE_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _run(args: list[str], workdir: Path) -> str:
    browser = chromium()
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={workdir / 'profile'}",
        *args,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=workdir, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within {TIMEOUT_S:.0f} s: {' '.join(args)}")
    if done.returncode != 0:
        pytest.fail(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def render(page: Path, width: int = 1600, height: int = 1200) -> Rendered:
    """Screenshot ``page`` at ``width`` x ``height`` and dump its rendered DOM."""
    page = page.resolve()
    workdir = page.parent / f".chromium-{page.stem}"
    workdir.mkdir(exist_ok=True)
    shot = workdir / f"{page.stem}.png"
    url = page.as_uri()
    _run([f"--screenshot={shot}", f"--window-size={width},{height}", url], workdir)
    if not shot.is_file():
        pytest.fail(f"chromium wrote no screenshot for {page}")
    dom = _run(["--dump-dom", "--virtual-time-budget=2000", url], workdir)
    return Rendered(shot, dom)


@dataclass(frozen=True)
class Png:
    width: int
    height: int
    colours: int  # distinct pixel values in a sample of the image
    non_white: float  # share of sampled pixels that are not (near) white
    saturated: float  # share of sampled pixels of a strong colour (not white, grey or black)


def read_png(path: Path, samples: int = 200_000) -> Png:
    """Decode an 8-bit RGB(A) PNG (what Chromium writes) with zlib alone: its size, how many
    distinct colours a sample holds, how much of it is not white (a blank page is all one
    colour), and how much is strongly coloured (text and tables are black and grey; the
    picture's edges are red, orange and blue)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    offset, chunks, header = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6), f"unexpected PNG format {depth}/{colour_type}"
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[bytes] = []
    step = max(1, (width * height) // samples)
    position = 0
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        for x in range(width):
            if position % step == 0:
                pixels.append(bytes(line[x * channels : x * channels + 3]))
            position += 1
        previous = line
    non_white = sum(1 for p in pixels if min(p) < 235) / len(pixels)
    saturated = sum(1 for p in pixels if max(p) - min(p) > 80) / len(pixels)
    return Png(width, height, len(set(pixels)), non_white, saturated)
