"""Screenshots of the web client for the README, light and dark, desktop and phone.

Usage: ``.venv/bin/python tools/screenshots.py [--out docs/screenshots]``

Starts a server on a free loopback port with a throw-away data directory,
fills it with a small conversation over the REST API, opens the page for a
few people in Debian's Chromium (``/usr/bin/chromium``) and saves PNGs.
Nothing here is a test: it only shows what the client looks like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, async_playwright, expect

log = logging.getLogger("screenshots")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"


@contextmanager
def running_server() -> Iterator[str]:
    """A ``serenchat serve`` process on a free port; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serenchat", "serve", "--port", str(port),
             "--data-dir", data, "--send-rate", "0", "--log-level", "warning"],
            cwd=ROOT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(15)


class Rest:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base + "/api/v1"
        self.sessions: dict[str, dict[str, Any]] = {}

    async def call(
        self, who: str | None, method: str, path: str, body: Any = None
    ) -> Any:
        headers = {}
        if who:
            headers["Authorization"] = f"Bearer {self.sessions[who]['token']}"
        async with self.http.request(
            method, self.base + path, json=body, headers=headers
        ) as response:
            response.raise_for_status()
            return await response.json() if response.status != 204 else None

    async def register(self, name: str) -> None:
        body = {"username": name, "password": PASSWORD}
        self.sessions[name] = await self.call(None, "POST", "/auth/register", body)

    async def say(self, who: str, room: str, text: str) -> dict[str, Any]:
        return await self.call(who, "POST", f"/rooms/{room}/messages", {"text": text})


async def seed(rest: Rest) -> str:
    """People, rooms and a conversation; returns the id of the DM room."""
    for name in ("alice", "bob", "carol", "dave", "erin"):
        await rest.register(name)
    await rest.call(
        "alice", "POST", "/rooms", {"id": "design", "title": "Design", "private": False}
    )
    await rest.call(
        "alice",
        "POST",
        "/rooms",
        {"id": "release", "title": "Release 1.0", "private": True},
    )
    for name in ("bob", "carol"):
        await rest.call("alice", "PUT", f"/rooms/release/members/{name}")
    dm = await rest.call("alice", "POST", "/dms", {"username": "bob"})
    await rest.call("carol", "POST", "/dms", {"username": "alice"})

    await rest.say(
        "dave", "general", "Morning all! Coffee machine on floor 2 works again."
    )
    await rest.say("carol", "general", "Finally. Productivity is saved.")
    plan = await rest.say(
        "alice",
        "general",
        "Plan for today:\n1. review the reconnect logic\n2. ship the new theme",
    )
    await rest.say(
        "bob", "general", "I'll take the review. Is it the branch from yesterday?"
    )
    await rest.say(
        "alice",
        "general",
        "Yes, notes are here: https://example.com/serenchat/notes#reconnect",
    )
    oops = await rest.say("dave", "general", "Has anyone seen my charger?")
    await rest.call("dave", "DELETE", f"/rooms/general/messages/{oops['id']}")
    await rest.say(
        "carol", "general", "The Solarized dark theme looks lovely on my phone."
    )
    await rest.call(
        "alice",
        "PATCH",
        f"/rooms/general/messages/{plan['id']}",
        {"text": "Plan for today:\n1. review the reconnect logic\n2. ship the themes"},
    )
    await rest.say("bob", "general", "Review done, left two small comments.")
    await rest.say("alice", "general", "Thanks Bob! Merging after lunch.")

    await rest.say("bob", dm["id"], "Got a minute for the release checklist?")
    await rest.say("alice", dm["id"], "Sure, after standup. Send it over.")
    await rest.say("carol", "design", "New icons are in the shared folder.")
    await rest.say("bob", "release", "Tagging the release candidate tonight.")
    return str(dm["id"])


async def open_as(
    browser: Browser,
    base: str,
    rest: Rest,
    who: str,
    *,
    viewport: dict[str, int],
    dark: bool,
    room: str = "general",
) -> Page:
    session = rest.sessions[who]
    context = await browser.new_context(
        viewport=viewport,
        color_scheme="dark" if dark else "light",
        device_scale_factor=2 if viewport is PHONE else 1,
        is_mobile=viewport is PHONE,
        has_touch=viewport is PHONE,
        storage_state={
            "cookies": [],
            "origins": [
                {
                    "origin": base,
                    "localStorage": [
                        {"name": "serenchat.session", "value": json.dumps(session)},
                    ],
                }
            ],
        },
    )
    page = await context.new_page()
    await page.goto(f"{base}/#room/{room}")
    await expect(page.locator("#me-status")).to_have_text("Online", timeout=15_000)
    await expect(page.locator("#messages li.msg").first).to_be_visible(timeout=15_000)
    return page


async def shoot(out: Path) -> None:
    with running_server() as base:
        async with aiohttp.ClientSession() as http, async_playwright() as pw:
            rest = Rest(http, base)
            dm = await seed(rest)
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            # Others online, so that presence, receipts and typing show.
            bob = await open_as(
                browser, base, rest, "bob", viewport=DESKTOP, dark=False
            )
            await open_as(browser, base, rest, "carol", viewport=DESKTOP, dark=False)

            for dark in (False, True):
                theme = "dark" if dark else "light"
                await login_screen(browser, base, out / f"login-{theme}.png", dark)

                page = await open_as(
                    browser, base, rest, "alice", viewport=DESKTOP, dark=dark
                )
                await bob.locator("#composer-input").press_sequentially("Sounds good")
                await expect(page.locator("#typing")).to_contain_text("typing")
                await settle(page)
                await page.screenshot(path=out / f"desktop-{theme}.png")
                await bob.locator("#composer-input").fill("")

                await page.goto(f"{base}/#room/{dm}")
                await page.reload()
                await expect(page.locator("#room-title")).to_have_text("bob")
                await expect(page.locator("#messages li.msg")).to_have_count(2)
                await settle(page)
                await page.screenshot(path=out / f"desktop-dm-{theme}.png")
                await page.context.close()

                phone = await open_as(
                    browser, base, rest, "alice", viewport=PHONE, dark=dark
                )
                await settle(phone)
                await phone.screenshot(path=out / f"phone-{theme}.png")
                await phone.click("#open-drawer")
                await expect(phone.locator("#sidebar")).to_be_visible()
                await settle(phone)
                await phone.screenshot(path=out / f"phone-drawer-{theme}.png")
                await phone.context.close()
            await browser.close()


async def login_screen(browser: Browser, base: str, path: Path, dark: bool) -> None:
    context = await browser.new_context(
        viewport=DESKTOP, color_scheme="dark" if dark else "light"
    )
    page = await context.new_page()
    await page.goto(base + "/")
    await expect(page.locator("#auth-form")).to_be_visible()
    await page.fill("#auth-username", "alice")
    await settle(page)
    await page.screenshot(path=path)
    await context.close()


async def settle(page: Page) -> None:
    """Wait until animations and pending renders are done, then blur focus."""
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await page.evaluate(
        """() => Promise.all(document.getAnimations()
            .filter(a => a.effect.getTiming().iterations !== Infinity)
            .map(a => a.finished.catch(() => {})))"""
    )
    await page.wait_for_function(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing: apt install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(args.out))
    for path in sorted(args.out.glob("*.png")):
        log.info("wrote %s (%d kB)", path, path.stat().st_size // 1024)


if __name__ == "__main__":
    main()
