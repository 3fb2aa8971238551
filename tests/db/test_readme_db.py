"""The README's "Patients and prescriptions" commands, run as shown: the CLI in-process, the
API served by ``justwalk api``'s own code on loopback, the curl calls made by aiohttp."""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from justwalk.api.server import serve
from justwalk.cli import main
from justwalk.config import Settings
from justwalk.db import open_repository

ROOT = Path(__file__).resolve().parents[2]
SECTION = re.search(r"^## Patients and prescriptions\n(.*?)^## ", (ROOT / "README.md").read_text(),
                    re.S | re.M)
assert SECTION is not None
BLOCKS = [[ln.split(" #")[0].strip() for ln in b.splitlines() if ln.strip()]
          for b in re.findall(r"```sh\n(.*?)```", SECTION[1], re.S)]


def _env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    if settings.database_url:
        monkeypatch.setenv("JUSTWALK_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.setenv("JUSTWALK_DATABASE_FILE", str(settings.database_file))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _curl(line: str, token: str, base: str) -> tuple[str, str, dict[str, str], str | None]:
    words = shlex.split(line.replace("$TOKEN", token))
    assert words[0] == "curl"
    headers: dict[str, str] = {}
    data = None
    rest = iter(words[1:])
    url = ""
    for word in rest:
        if word == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name] = value
        elif word == "-d":
            data = next(rest)
        elif word.startswith("http"):
            url = word
        else:
            assert word == "-sS", word
    assert url.startswith("http://127.0.0.1:8090/")
    return ("POST" if data else "GET"), url.replace("http://127.0.0.1:8090", base), headers, data


async def test_the_readme_commands_run_as_shown(fresh_settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    shell, api = BLOCKS
    monkeypatch.chdir(ROOT)  # the example file's path is relative to the checkout
    _env(monkeypatch, fresh_settings)
    for line in shell:
        assert line.startswith("justwalk db "), line
        assert main(shlex.split(line)[1:]) == 0, line
    out = capsys.readouterr().out
    assert "10 min, 5x/week, cadence 95-110 steps/min" in out
    # the example file: pt-0042 (created above) gets its height, pt-0043/44 are new
    assert "2 patient(s) created, 1 updated in clinic clinic-a" in out

    token_line, api_line, *curls = api
    m = re.fullmatch(r"TOKEN=\$\((justwalk db token issue .*)\)", token_line)
    assert m is not None and api_line == "justwalk api"
    assert main(shlex.split(m[1])[1:]) == 0
    token = capsys.readouterr().out.strip()
    settings = Settings.from_env(api_port=_free_port())
    assert settings.database_url == fresh_settings.database_url
    repo = open_repository(settings)
    server = asyncio.create_task(serve(settings, repo))  # what `justwalk api` runs
    answers: list[Any] = []
    try:
        base = f"http://127.0.0.1:{settings.api_port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # until it listens
                try:
                    async with http.get(base + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            for line in curls:
                method, url, headers, data = _curl(line, token, base)
                async with http.request(method, url, headers=headers, data=data) as r:
                    assert r.status in (200, 201), await r.text()
                    answers.append(await r.json())
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        repo.engine.dispose()
    patient, rx, listed = answers
    assert patient["patient_id"] == "pt-0045" and patient["clinic_id"] == "clinic-a"
    assert rx["session_type"] == "6mwt" and rx["duration_s"] == 360.0
    assert listed == {"prescriptions": [rx]}
    check = open_repository(settings)
    try:
        assert check.patient("clinic-a", "pt-0045")["sensor_height_m"] == 1.02
        assert check.sensor_heights() == {"pt-0042": 0.97, "pt-0043": 1.04, "pt-0045": 1.02}
        assert [p["patient_id"] for p in check.patients("clinic-a")] == [
            "pt-0042", "pt-0043", "pt-0044", "pt-0045"]
    finally:
        check.engine.dispose()
