"""What the README shows is what runs: its commands exist and parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from justwalk.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands(prefix: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    lines = [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln.startswith(prefix)]


def test_readme_shows_the_two_commands():
    assert "make demo" in readme_commands("make")
    assert "make test" in readme_commands("make")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("command", readme_commands("justwalk "))
def test_every_justwalk_command_in_the_readme_parses(command):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert callable(args.func)
