"""The serenchat command: settings from flags and environment, db commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ROOT


def run(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serenchat", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=60,
    )


def test_db_upgrade_then_current(tmp_path: Path) -> None:
    """`db upgrade` migrates a new data directory; `db current` reports it."""
    before = run("db", "current", "--data-dir", str(tmp_path))
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("empty: behind")

    upgraded = run("db", "upgrade", "--data-dir", str(tmp_path))
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "serenchat.db").exists()

    after = run("db", "current", "--data-dir", str(tmp_path))
    assert after.stdout.strip() == "0002: up to date"


def test_environment_supplies_settings(tmp_path: Path) -> None:
    """SERENCHAT_DATA_DIR stands in for --data-dir."""
    result = run("db", "upgrade", env={"SERENCHAT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "serenchat.db").exists()


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    """A malformed value names the setting and exits with usage status 2."""
    result = run("serve", "--data-dir", str(tmp_path), env={"SERENCHAT_PORT": "http"})
    assert result.returncode == 2
    assert "--port" in result.stderr and "'http'" in result.stderr


def test_unsupported_database_url_is_refused(tmp_path: Path) -> None:
    """An unknown database scheme fails at once with its name in the message."""
    result = run("db", "upgrade", "--database-url", "oracle://x@y/z")
    assert result.returncode == 2
    assert "unsupported database URL scheme: oracle" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_fails_in_one_line(tmp_path: Path) -> None:
    """A database that does not answer stops the start with a short error."""
    url = "postgresql://nobody@127.0.0.1:9/none"
    result = run("serve", "--data-dir", str(tmp_path), "--database-url", url)
    assert result.returncode == 1
    assert "cannot start:" in result.stderr
    assert "Traceback" not in result.stderr


async def test_server_restarts_on_its_data_dir(
    server_factory: Any, tmp_path: Path
) -> None:
    """Stopping and starting on one data dir keeps accounts and the secret."""
    data = tmp_path / "kept"
    server = server_factory(data_dir=data)
    async with aiohttp.ClientSession() as http:
        body = {"username": "keeper", "password": "password-1"}
        async with http.post(server.url + "/api/v1/auth/register", json=body) as r:
            token = (await r.json())["token"]
    server.stop()
    server.start()
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(server.url + "/api/v1/me", headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["username"] == "keeper"
    assert oct((data / "jwt-secret").stat().st_mode & 0o777) == "0o600"
