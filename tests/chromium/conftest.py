"""Real Chromium (Debian's package) through Playwright, against the real services on loopback.
Screenshots of each page state go to test-artifacts/screenshots/ (ignored by git).

Without Chromium these tests are skipped and listed at the end of the run; with CI=true a
missing browser is a failure (SPEC §10, "Running it")."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
HOW_TO_GET_CHROMIUM = "sudo apt-get install -y chromium"


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def browser():
    path = chromium_path()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and Chromium is missing ({HOW_TO_GET_CHROMIUM})")
        pytest.skip(f"Chromium is not installed ({HOW_TO_GET_CHROMIUM})")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        # No background networking: this machine's closed network refuses those connections.
        b = await p.chromium.launch(executable_path=path, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def shot(request):
    """shot(page, "state"): a full-page screenshot named after the test and the state."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def take(page, state: str) -> Path:
        path = ARTIFACTS / f"{request.node.name.replace('[', '-').rstrip(']')}-{state}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path
    return take
