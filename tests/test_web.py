"""The web client in a real browser: Debian's Chromium driven by Playwright.

Each test starts a real server process and opens the page at ``/`` in one
browser context per person, so two people have separate storage and
sockets. Waits are Playwright's auto-retrying assertions, never sleeps.
Every page also fails the test if it logs an error, which includes any
Content-Security-Policy violation.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import REQUIRE_SERVICES, Client, Server

# Debian's package by default; SERENCHAT_CHROMIUM points elsewhere.
CHROMIUM = Path(os.environ.get("SERENCHAT_CHROMIUM", "/usr/bin/chromium"))


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


if (_reason := _missing()) is not None:
    if REQUIRE_SERVICES:
        pytest.fail(
            f"{_reason}; browser tests cannot run but SERENCHAT_REQUIRE_SERVICES=1",
            pytrace=False,
        )
    pytest.skip(f"{_reason}; browser tests skipped", allow_module_level=True)

from playwright.async_api import (  # noqa: E402 (needs the check above)
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    async_playwright,
    expect,
)

# One browser serves the whole module; each person gets a fresh context.
pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "password-1"
WAIT = 10_000  # ms; the longest any single expectation may take
# What Chromium logs for requests to a server that is down.
REFUSED = re.compile(r"WebSocket connection to .* failed|ERR_CONNECTION_REFUSED")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=os.environ.get("SERENCHAT_HEADED") != "1",
            args=CHROMIUM_ARGS,
        )
        yield launched
        await launched.close()


class Person:
    """Someone using the web client in their own browser context."""

    def __init__(self, name: str, context: BrowserContext, page: Page) -> None:
        self.name = name
        self.context = context
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.closed = False
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    async def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    @classmethod
    async def open(
        cls, browser: Browser, server: Server, name: str, **context: Any
    ) -> Person:
        ctx = await browser.new_context(
            viewport=context.pop("viewport", {"width": 1280, "height": 800}),
            **context,
        )
        page = await ctx.new_page()
        person = cls(name, ctx, page)
        person.response = await page.goto(server.url + "/")
        return person

    @classmethod
    async def register(cls, browser: Browser, server: Server, name: str) -> Person:
        """Open the page and create an account through the form."""
        person = await cls.open(browser, server, name)
        page = person.page
        await page.click("#auth-mode-register")
        await page.fill("#auth-username", name)
        await page.fill("#auth-password", PASSWORD)
        await page.click("#auth-submit")
        await expect(page.locator("#room-title")).to_have_text("General", timeout=WAIT)
        await expect(page.locator("#me-status")).to_have_text("Online", timeout=WAIT)
        return person

    # Reading the page.

    def message(self, text: str) -> Any:
        """The message list item whose text equals ``text``."""
        return self.page.locator("#messages li.msg").filter(
            has=self.page.locator(
                ".msg-text", has_text=re.compile(rf"^{re.escape(text)}")
            )
        )

    async def texts(self) -> list[str]:
        return await self.page.locator("#messages li.msg .msg-text").all_inner_texts()

    async def see(self, text: str) -> None:
        await expect(self.message(text)).to_have_count(1, timeout=WAIT)

    # Doing things.

    async def send(self, text: str) -> None:
        composer = self.page.locator("#composer-input")
        await composer.fill(text)
        await composer.press("Enter")
        await expect(composer).to_have_value("")

    async def start_dm(self, other: str) -> None:
        await self.page.click("#new-dm")
        await self.page.fill("#dm-user", other)
        await self.page.keyboard.press("Enter")
        await expect(self.page.locator("#room-title")).to_have_text(other, timeout=WAIT)

    async def open_room(self, name: str) -> None:
        await self.page.locator("#sidebar a.nav-item", has_text=name).click()
        await expect(self.page.locator("#room-title")).to_have_text(name)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.context.close()

    def assert_clean(self, allow: re.Pattern[str] | None = None) -> None:
        errors = [e for e in self.errors if not (allow and allow.search(e))]
        assert not errors, f"{self.name}'s page logged errors: {errors}"
        assert not self.dialogs, f"{self.name}'s page opened dialogs: {self.dialogs}"


class People:
    """Opens pages on one server for the people of a test; closes them all."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.browser = browser
        self.server = server
        self.opened: list[Person] = []

    async def register(self, name: str) -> Person:
        person = await Person.register(self.browser, self.server, name)
        self.opened.append(person)
        return person

    async def close(self) -> None:
        for person in self.opened:
            await person.close()


@pytest_asyncio.fixture(loop_scope="module")
async def people(browser: Browser, server: Server) -> AsyncIterator[People]:
    crowd = People(browser, server)
    yield crowd
    await crowd.close()


async def rest_user(http: aiohttp.ClientSession, server: Server, name: str) -> Client:
    """Register ``name`` over REST and return a client holding their token."""
    client = Client(http, server.url)
    data = await client.call(
        "POST", "/auth/register", {"username": name, "password": PASSWORD}
    )
    client.token = data["token"]
    client.username = name
    return client


async def test_two_people_talk(people: People) -> None:
    """Two people register and each message shows up on the other side once."""
    alice = await people.register("alice")
    bob = await people.register("bob")

    await alice.send("Hello Bob, welcome to SerenChat")
    await bob.see("Hello Bob, welcome to SerenChat")
    await bob.send("Hi Alice!")
    await alice.see("Hi Alice!")

    # Shift+Enter adds a line; Enter sends both lines as one message.
    composer = bob.page.locator("#composer-input")
    await composer.press_sequentially("first line")
    await composer.press("Shift+Enter")
    await composer.press_sequentially("second line")
    await composer.press("Enter")
    await alice.see("first line\nsecond line")

    # The sender's own message was confirmed (it has a server id and a
    # receipt mark) and neither the ack nor the broadcast duplicated it.
    own = alice.message("Hello Bob, welcome to SerenChat")
    await expect(own).to_have_attribute("data-mark", re.compile("sent|delivered|read"))
    await expect(own).to_have_attribute("data-id", re.compile(r"\d+"))
    for person in (alice, bob):
        assert await person.texts() == [
            "Hello Bob, welcome to SerenChat",
            "Hi Alice!",
            "first line\nsecond line",
        ]
        person.assert_clean()


async def test_typing_indicator_shows_and_ends(people: People) -> None:
    """Alice sees "bob is typing…" while Bob types, and it goes when he stops."""
    alice = await people.register("alice")
    bob = await people.register("bob")
    typing = alice.page.locator("#typing")

    await bob.page.locator("#composer-input").press_sequentially("I am writing some")
    await expect(typing).to_have_text("bob is typing…", timeout=WAIT)

    # Emptying the box ends it at once.
    await bob.page.locator("#composer-input").fill("")
    await expect(typing).to_have_text("", timeout=WAIT)

    # So does sending.
    await bob.page.locator("#composer-input").press_sequentially("here it is")
    await expect(typing).to_have_text("bob is typing…", timeout=WAIT)
    await bob.page.locator("#composer-input").press("Enter")
    await alice.see("here it is")
    await expect(typing).to_have_text("", timeout=WAIT)
    alice.assert_clean()
    bob.assert_clean()


async def test_presence_turns_offline_when_page_closes(people: People) -> None:
    """Bob's dot goes from online to offline in Alice's DM list and members."""
    alice = await people.register("alice")
    bob = await people.register("bob")
    await alice.start_dm("bob")

    dm_dot = alice.page.locator("#dm-list .presence")
    member = alice.page.locator('#member-list li[data-user="bob"]')
    await expect(dm_dot).to_have_attribute("data-status", "online", timeout=WAIT)
    await expect(member).to_have_attribute("data-status", "online")
    await expect(alice.page.locator("#room-subtitle")).to_contain_text("Online")

    await bob.close()
    await expect(dm_dot).to_have_attribute("data-status", "offline", timeout=WAIT)
    await expect(member).to_have_attribute("data-status", "offline")
    await expect(alice.page.locator("#room-subtitle")).to_contain_text("last seen")
    alice.assert_clean()


async def test_read_marks_and_unread_badges(people: People) -> None:
    """Alice's DM message gets a read mark once Bob has it on screen."""
    alice = await people.register("alice")
    bob = await people.register("bob")
    await alice.start_dm("bob")
    await bob.start_dm("alice")

    await alice.send("Did you read this?")
    await bob.see("Did you read this?")
    own = alice.message("Did you read this?")
    await expect(own).to_have_attribute("data-mark", "read", timeout=WAIT)
    await expect(own.locator(".msg-status")).to_have_attribute("title", "Read by bob")

    # A message in a room Bob is not looking at counts as unread for him
    # until he opens that room.
    await alice.open_room("General")
    await alice.send("News in general")
    badge = bob.page.locator('#room-list a[data-room="general"] .badge')
    await expect(badge).to_have_attribute("data-unread", "1", timeout=WAIT)
    await expect(bob.page).to_have_title(re.compile(r"^\(1\) "))
    await bob.open_room("General")
    await bob.see("News in general")
    await expect(badge).to_have_count(0, timeout=WAIT)

    # In a room the marks count readers.
    news = alice.message("News in general")
    await expect(news).to_have_attribute("data-mark", "read", timeout=WAIT)
    await expect(news.locator(".msg-status")).to_have_attribute(
        "title", "Delivered to 1 of 1, read by 1 of 1"
    )
    alice.assert_clean()
    bob.assert_clean()


async def test_rooms_browse_join_add_members_and_log_out(people: People) -> None:
    """Create public and private rooms, join one, add someone to the other."""
    alice = await people.register("alice")
    bob = await people.register("bob")
    page = alice.page

    await page.click("#create-room")
    await page.fill("#room-name", "Book Club")
    await expect(page.locator("#room-id")).to_have_value("book-club")
    await page.keyboard.press("Enter")
    await expect(page.locator("#room-title")).to_have_text("Book Club")
    await alice.send("Welcome to the book club")

    await bob.page.click("#browse-rooms")
    await bob.page.get_by_role("button", name="Join Book Club").click()
    await expect(bob.page.locator("#room-title")).to_have_text("Book Club")
    await bob.see("Welcome to the book club")

    await page.click("#create-room")
    await page.fill("#room-name", "Secret plans")
    await page.get_by_text("Private", exact=True).click()
    await page.keyboard.press("Enter")
    await expect(page.locator("#room-title")).to_have_text("Secret plans")
    await page.click("#add-member")
    await page.fill("#member-user", "bob")
    await page.keyboard.press("Enter")
    await expect(page.locator("#dialog .form-success")).to_have_text("bob was added.")
    await page.keyboard.press("Escape")
    await expect(page.locator("#add-member")).to_be_focused()
    await expect(page.locator('#member-list li[data-user="bob"]')).to_have_count(1)
    await alice.send("Just between us")

    # Bob picks the dark theme; it and his session survive a reload, and
    # then he has the new room.
    root = bob.page.locator("html")
    await expect(root).not_to_have_attribute("data-theme", "dark")
    await bob.page.click("#theme-toggle")
    await expect(root).to_have_attribute("data-theme", "dark")
    await bob.page.reload()
    await expect(root).to_have_attribute("data-theme", "dark")
    secret = bob.page.locator('#room-list a[data-room="secret-plans"]')
    await expect(secret.locator(".badge")).to_have_text("1", timeout=WAIT)
    await expect(secret).to_have_attribute(
        "aria-label", "Secret plans, private room, 1 unread"
    )
    await bob.open_room("Secret plans")
    await bob.see("Just between us")

    await bob.page.click("#logout")
    await expect(bob.page.locator("#auth-form")).to_be_visible()
    await bob.page.reload()
    await expect(bob.page.locator("#auth-form")).to_be_visible()
    alice.assert_clean()
    bob.assert_clean()


async def test_markup_is_shown_as_text_and_runs_nothing(people: People) -> None:
    """HTML and script in messages are displayed literally; only http(s) links."""
    alice = await people.register("alice")
    bob = await people.register("bob")
    assert alice.response is not None
    policy = alice.response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy

    payloads = [
        '<img src=x onerror="window.__pwned=1;alert(1)">',
        "<script>window.__pwned=2;alert(2)</script>",
        '<a href="javascript:window.__pwned=3">click</a> javascript:alert(3)',
        "see https://example.com/docs?a=1&b=<2> and data:text/html,<b>x</b>",
    ]
    for payload in payloads:
        await alice.send(payload)
    for payload in payloads:
        await bob.see(payload)

    for person in (alice, bob):
        page = person.page
        assert await person.texts() == payloads
        assert await page.evaluate("window.__pwned") is None
        assert await page.locator("#messages img, #messages script").count() == 0
        links = page.locator("#messages a")
        await expect(links).to_have_count(1)
        await expect(links).to_have_attribute("href", "https://example.com/docs?a=1&b=")
        await expect(links).to_have_attribute("rel", "noopener noreferrer")
        await expect(links).to_have_attribute("target", "_blank")
        person.assert_clean()


async def test_edit_and_delete_with_the_keyboard(people: People) -> None:
    """Arrow up edits the last message; Delete on a message removes it."""
    alice = await people.register("alice")
    bob = await people.register("bob")
    await alice.send("Lunch at 12?")
    await alice.send("Bring an umbrella")
    await bob.see("Bring an umbrella")

    page = alice.page
    await page.locator("#composer-input").press("ArrowUp")
    editor = page.locator(".edit-input")
    await expect(editor).to_be_focused()
    await editor.fill("Bring an umbrella, it rains")
    await editor.press("Enter")
    edited = bob.message("Bring an umbrella, it rains")
    await expect(edited.locator(".edited")).to_have_text("(edited)", timeout=WAIT)

    # Escape from the box, arrows through the messages, Delete, confirm.
    lunch = alice.message("Lunch at 12?")
    await page.locator("#composer-input").focus()
    await page.keyboard.press("Shift+Tab")
    await expect(page.locator("#messages li.msg").last).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await expect(lunch).to_be_focused()
    await page.keyboard.press("Delete")
    await expect(page.locator("#dialog")).to_be_visible()
    await page.keyboard.press("Enter")
    deleted = bob.page.locator("#messages li.msg.deleted")
    await expect(deleted).to_have_count(1, timeout=WAIT)
    await expect(deleted).to_contain_text("Message deleted")
    assert "Lunch at 12?" not in await bob.page.locator("#messages").inner_text()
    alice.assert_clean()
    bob.assert_clean()


async def test_page_recovers_what_it_missed_across_a_restart(
    people: People, server: Server, server_factory: Any
) -> None:
    """While the server is down others post, edit and delete; the page catches up.

    The server stops; a second process on the same data directory takes the
    changes over REST and stops too; then the first comes back on its port.
    The open page must show the banner, reconnect by itself and end up with
    every message once, in order, in its latest state, including one it
    wrote while offline.
    """
    alice = await people.register("alice")
    page = alice.page
    async with aiohttp.ClientSession() as http:
        bob = await rest_user(http, server, "bob")
        first = await bob.call("POST", "/rooms/general/messages", {"text": "one"})
        second = await bob.call("POST", "/rooms/general/messages", {"text": "two"})
        await alice.see("two")

        await asyncio.to_thread(server.stop)
        banner = page.locator("#banner")
        await expect(banner).to_contain_text("Connection lost", timeout=WAIT)
        await expect(page.locator("#me-status")).to_have_text("Offline")
        await alice.send("written while offline")
        await expect(alice.message("written while offline")).to_have_attribute(
            "data-mark", "pending"
        )

        other = await asyncio.to_thread(server_factory, data_dir=server.data_dir)
        bob.base = other.url
        for n in (3, 4, 5):
            await bob.call("POST", "/rooms/general/messages", {"text": f"missed {n}"})
        await bob.call(
            "PATCH", f"/rooms/general/messages/{first['id']}", {"text": "one, edited"}
        )
        await bob.call("DELETE", f"/rooms/general/messages/{second['id']}")
        await asyncio.to_thread(other.stop)

        await asyncio.to_thread(server.start)
        await expect(page.locator("#me-status")).to_have_text("Online", timeout=30_000)
        await expect(banner).to_be_hidden(timeout=WAIT)

    await alice.see("missed 5")
    await expect(alice.message("written while offline")).to_have_attribute(
        "data-mark", re.compile("sent|delivered|read"), timeout=WAIT
    )
    # Pending messages go out after the rejoins, so after what was missed.
    assert await alice.texts() == [
        "one, edited (edited)",
        "Message deleted",
        "missed 3",
        "missed 4",
        "missed 5",
        "written while offline",
    ]
    # Browsers log the refused connection attempts; nothing else may show.
    alice.assert_clean(allow=REFUSED)


async def test_scrolling_up_loads_older_history_in_order(
    people: People, server: Server
) -> None:
    """Older pages load at the top, in order, without moving what is on screen."""
    total = 130
    async with aiohttp.ClientSession() as http:
        bob = await rest_user(http, server, "bob")
        for n in range(1, total + 1):
            text = f"history {n:03}"
            await bob.call("POST", "/rooms/general/messages", {"text": text})

        alice = await people.register("alice")
        page = alice.page
        await alice.see(f"history {total:03}")
        scroller = page.locator("#scroller")
        items = page.locator("#messages li.msg")
        assert await items.count() < total

        # One count decides both whether to go on and what must change: a
        # page still loading when the loop looks must not leave it waiting
        # for a load that never comes once everything is there.
        while (before := await items.count()) < total:
            # Scroll to the top and note where the oldest message is, in one
            # go, before the scroll event can start a load.
            key, top = await scroller.evaluate(
                """el => {
                    el.scrollTo(0, 0);
                    const first = el.querySelector("li.msg");
                    return [first.dataset.key, first.getBoundingClientRect().top];
                }"""
            )
            await expect(items).not_to_have_count(before, timeout=WAIT)
            # That message stays where it was on screen: no jump.
            anchor = page.locator(f'#messages li[data-key="{key}"]')
            moved = (await anchor.bounding_box() or {})["y"] - top
            assert abs(moved) <= 2, f"the view jumped by {moved}px"

        await expect(page.locator("#history-status")).to_contain_text("beginning")
        assert await alice.texts() == [f"history {n:03}" for n in range(1, total + 1)]

        # Scrolled up, a new message does not pull the view down: a pill
        # says it came, and takes the reader there.
        await scroller.evaluate("el => el.scrollTo(0, 0)")
        await bob.call("POST", "/rooms/general/messages", {"text": "fresh news"})
        pill = page.locator("#new-pill")
        await expect(pill).to_have_text("1 new message", timeout=WAIT)
        assert await scroller.evaluate("el => el.scrollTop") == 0
        await pill.click()
        await expect(pill).to_be_hidden()
        await expect(alice.message("fresh news")).to_be_in_viewport()
    alice.assert_clean()


async def test_phone_layout_puts_the_rooms_in_a_drawer(
    browser: Browser, server: Server
) -> None:
    """On a phone-sized screen the room list slides in and out over the chat."""
    async with aiohttp.ClientSession() as http:
        alice = await rest_user(http, server, "alice")
        await alice.call("POST", "/rooms", {"id": "garden", "title": "Garden"})
        await alice.call("POST", "/rooms/garden/messages", {"text": "Tomatoes!"})
    phone = await Person.open(
        browser, server, "alice", viewport={"width": 390, "height": 844}
    )
    try:
        page = phone.page
        await page.fill("#auth-username", "alice")
        await page.fill("#auth-password", PASSWORD)
        await page.press("#auth-password", "Enter")
        sidebar = page.locator("#sidebar")
        await expect(page.locator("#composer-input")).to_be_visible(timeout=WAIT)
        await expect(sidebar).to_be_hidden()

        await page.click("#open-drawer")
        await expect(sidebar).to_be_visible()
        await expect(page.locator("#main")).to_have_js_property("inert", True)
        await page.keyboard.press("Escape")
        await expect(sidebar).to_be_hidden()
        await expect(page.locator("#open-drawer")).to_be_focused()

        await page.click("#open-drawer")
        await page.locator("#sidebar a.nav-item", has_text="Garden").click()
        await expect(sidebar).to_be_hidden()
        await expect(page.locator("#room-title")).to_have_text("Garden")
        await phone.see("Tomatoes!")
        phone.assert_clean()
    finally:
        await phone.close()


async def test_message_boxes_follow_the_servers_length_limit(
    browser: Browser, server_factory: Any
) -> None:
    """The composer and the edit box take the limit the hello reply names."""
    server = await asyncio.to_thread(
        server_factory, "--send-rate", "0", "--max-message-length", "40"
    )
    person = await Person.register(browser, server, "alice")
    try:
        page = person.page
        composer = page.locator("#composer-input")
        await expect(composer).to_have_js_property("maxLength", 40)
        await composer.press_sequentially("x" * 60)
        assert await composer.input_value() == "x" * 40
        await composer.press("Enter")
        await person.see("x" * 40)
        await composer.press("ArrowUp")  # edit the last message
        await expect(page.locator(".edit-input")).to_have_attribute("maxlength", "40")
        person.assert_clean()
    finally:
        await person.close()
