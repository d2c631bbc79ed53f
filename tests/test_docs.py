"""The README and the pages under docs/: every link lands on a file (or a heading) that exists, and every
`python -m mardini_core ...` command they show is one the CLI accepts as written (its options parsed,
nothing run), so a renamed flag or command breaks this test instead of a reader's first try."""
import re
import shlex
from pathlib import Path

import pytest

from comfy_fakes import REPO
from mardini_core.cli import build_parser, chosen_command

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def shell_blocks(text: str) -> list[str]:
    """The text of a page's bash / sh / unlabelled code blocks."""
    blocks, current, language = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def commands(text: str) -> list[str]:
    """The mardini_core command lines of a page's shell blocks, continuation lines joined, comments dropped,
    shell variables given a value."""
    found = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\$\{?\w+\}?", "1", line.split(" #")[0]).strip()
            if re.search(r"-m mardini_core\b", line):
                found.append(line)
    return found


def test_the_pages_exist_and_the_readme_stays_short():
    assert {p.name for p in PAGES} >= {"README.md", "training.md", "default-model.md", "capacity-plan.md", "architecture.md"}
    assert len((REPO / "README.md").read_text().split()) < 3000, "keep the README to set-up, ComfyUI, nodes, CLI and quality"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_lands(page):
    text = page.read_text()
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to {target} finds no file"
        if anchor and file.suffix == ".md":
            headings = {slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
            assert anchor in headings, f"{page.name}: link to {target} finds no heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_parses(page):
    for line in commands(page.read_text()):
        words = shlex.split(line)
        argv = words[words.index("mardini_core") + 1:]
        argv = next((argv[:i] for i, w in enumerate(argv) if w in ("&&", ";", "|", ">", "2>")), argv)
        try:
            build_parser(chosen_command(argv)).parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code == 0, f"{page.name}: the CLI refuses `{line}`"


def test_the_checker_sees_a_wrong_flag():
    with pytest.raises(SystemExit):
        build_parser("generate").parse_args(["generate", "--task", "i2v", "--imagez", "a.png", "--out", "x.mp4"])
    assert commands("```bash\npython -m mardini_core train --config a.toml \\\n  --out b  # note\n```") == [
        "python -m mardini_core train --config a.toml    --out b"]
