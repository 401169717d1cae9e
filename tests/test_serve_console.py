"""The web console as `make run` serves it: `edrtrial serve --with-sandbox` runs it beside the
scheduler (an account `admin` made on a new store, its password only in an owner-only
file), `serve --no-web` leaves it out, `edrtrial web` runs it alone, and a port already taken
is one line saying so."""

from __future__ import annotations

import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import clock
from sandbox_config import settings, write_config
from serve_process import EDRTRIAL, Serve, edrtrial
from test_serve import free_port
from web_support import csrf_of

pytestmark = pytest.mark.slow

CONSOLE = re.compile(r"web console at (http://127\.0\.0\.1:\d+)/")


def config_for(tmp_path: Path, database_url: str, **web: object) -> Path:
    port = free_port()
    data = settings(database_url, base_url=f"https://127.0.0.1:{port}", sandbox_port=port)
    data["web"] = {"port": 0, **web}
    config = write_config(tmp_path / "config.toml", data, companies=0)
    assert edrtrial(config, "db", "upgrade").returncode == 0
    return config


def console_url(serve: Serve) -> str:
    serve.wait_until("the console", lambda: CONSOLE.search(serve.output()) is not None, 60)
    found = CONSOLE.search(serve.output())
    assert found
    return found.group(1)


def test_serve_runs_the_console_and_the_sample_admin_signs_in(tmp_path, now, database_url):
    config = config_for(tmp_path, database_url)
    serve = Serve(config, tmp_path / "serve.log", "--with-sandbox")
    try:
        url = console_url(serve)
        secret = tmp_path / "var" / "console-admin.txt"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        password = re.search(r"password: (\S+)", secret.read_text(encoding="utf-8"))
        assert password and password.group(1) not in serve.output()
        with httpx.Client(base_url=url) as client:
            assert client.get("/healthz").text == "ok\n"
            token = csrf_of(client.get("/login").text)
            signed = client.post(
                "/login",
                data={"csrf": token, "username": "admin", "password": password.group(1)},
            )
            assert signed.status_code == 303
            assert client.get("/programme").status_code == 200
    finally:
        assert serve.stop() == 0, serve.output()
    assert "console account made: admin" in serve.output()


def test_serve_no_web_leaves_the_console_out(tmp_path, now, database_url):
    config = config_for(tmp_path, database_url)
    serve = Serve(config, tmp_path / "serve.log", "--no-web")
    try:
        serve.wait_until("serving", lambda: "edrtrial serving" in serve.output(), 60)
    finally:
        assert serve.stop() == 0, serve.output()
    assert "web console" not in serve.output()


def test_edrtrial_web_runs_the_console_alone(tmp_path, now, database_url):
    config = config_for(tmp_path, database_url)
    log = tmp_path / "web.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [EDRTRIAL, "--config", str(config), "web"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clock.subprocess_env(),
        )
    try:
        deadline = time.monotonic() + 60
        while not CONSOLE.search(log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        found = CONSOLE.search(log.read_text())
        assert found
        assert httpx.get(found.group(1) + "/healthz").text == "ok\n"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()


def test_a_console_port_already_taken_is_one_line(tmp_path, now, database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = config_for(tmp_path, database_url, port=port)
        result = edrtrial(config, "web")
    assert result.returncode == 2
    assert f"the console cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
