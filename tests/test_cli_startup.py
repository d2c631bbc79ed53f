"""The dispatcher imports only the chosen command: `--help` lists every command from COMMANDS without
importing torch, and a command's own --help still shows its module's arguments."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mardini_core.cli import COMMANDS, build_parser, chosen_command

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_command_without_importing_torch_or_any_command():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "mardini_core", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert all(name in out.stdout for name in COMMANDS)
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and not any(m.startswith("mardini_core.commands.") for m in imported)


def test_only_the_chosen_command_is_built():
    assert chosen_command(["--debug", "presets", "--json"]) == "presets" and chosen_command(["--help"]) is None
    args = build_parser("presets").parse_args(["--debug", "presets", "--json"])
    assert args.debug and args.json and args._run.__module__ == "mardini_core.commands.presets"
    assert "--json" in build_parser("presets")._subparsers._group_actions[0].choices["presets"].format_help()
