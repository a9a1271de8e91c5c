"""The documentation points at things that exist: relative links (and their anchors),
`xtinyhar <command>` subcommands, benchmark scripts, config files and make targets named in
README.md and docs/*.md."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from xtinyhar.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
COMMAND = re.compile(r"(?<![\w./-])(?<!from )xtinyhar[ \t]+([a-z][a-z0-9-]*)")
BENCHMARK = re.compile(r"(?<![\w-])(?:benchmarks/)?(bench_\w+)\.py\b")
CONFIG = re.compile(r"(?<![\w/.-])(configs/[\w./-]+?\.ya?ml)\b")
MAKE = re.compile(r"(?<![\w.-])make[ \t]+([a-z][\w-]*)")


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_of(markdown: str) -> str:
    """Fenced blocks and inline code spans: where commands are written."""
    blocks = [m.group(0) for m in FENCE.finditer(markdown)]
    prose = FENCE.sub("", markdown)
    return "\n".join(blocks + [m.group(0) for m in INLINE_CODE.finditer(prose)])


def prose_of(markdown: str) -> str:
    """The markdown without code, where links are real links."""
    return INLINE_CODE.sub("", FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed,
    spaces to hyphens."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link's text only
    heading = heading.replace("`", "").strip().lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for match in HEADING.finditer(FENCE.sub("", text(path))):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        out.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return out


def links(path: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(prose_of(text(path)))]


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` whose file (or, for a .md file, whose anchor) is missing."""
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):        # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        where = (path.parent / file_part).resolve() if file_part else path
        if not where.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target} (no heading with anchor #{anchor})")
    return broken


def subcommands() -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("xtinyhar's parser has no subcommands")


def make_targets() -> set[str]:
    makefile = text(ROOT / "Makefile")
    targets = set(re.findall(r"^([A-Za-z][\w-]*)[ \t]*:(?!=)", makefile, re.MULTILINE))
    for line in re.findall(r"^\.PHONY:(.*)$", makefile, re.MULTILINE):
        targets |= set(line.split())
    return targets


def test_the_pages_exist():
    names = {p.name for p in PAGES}
    assert "README.md" in names and len(PAGES) >= 10, sorted(names)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files_and_headings(page):
    assert broken_links(page) == []


def test_links_are_collected():
    """The checker sees the links (a regex that matched nothing would pass every page)."""
    count = sum(len(links(page)) for page in PAGES)
    assert count >= 60, f"only {count} links found in README.md and docs/*.md"
    assert len(links(ROOT / "README.md")) >= 15


def test_the_link_checker_catches_a_broken_link(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md) [ok](other.md#a-section) [ok](#page)\n"
                    "[gone](missing.md) [no anchor](other.md#nowhere) [web](https://example.org)\n"
                    "```\n[inside code](not-checked.md)\n```\n")
    assert broken_links(page) == ["missing.md (no such file)",
                                  "other.md#nowhere (no heading with anchor #nowhere)"]


def test_slugs_follow_github():
    assert slug("Parallel folds: `--jobs`") == "parallel-folds---jobs"
    assert slug("`xtinyhar stream`") == "xtinyhar-stream"
    assert slug("Results (UTD-MHAD, IMU only)") == "results-utd-mhad-imu-only"


def test_every_named_xtinyhar_command_exists():
    real = subcommands()
    assert {"prepare", "cv", "export", "stream"} <= real
    named: dict[str, set[str]] = {}
    for page in PAGES:
        for command in COMMAND.findall(text(page)):
            named.setdefault(command, set()).add(page.relative_to(ROOT).as_posix())
    assert len(named) >= 8, sorted(named)
    unknown = {c: sorted(pages) for c, pages in named.items() if c not in real}
    assert unknown == {}, f"not xtinyhar subcommands: {unknown}"


def test_every_named_benchmark_script_exists():
    named = {name for page in PAGES for name in BENCHMARK.findall(text(page))}
    assert len(named) >= 5, sorted(named)
    missing = sorted(n for n in named if not (ROOT / "benchmarks" / f"{n}.py").is_file())
    assert missing == []


def test_every_named_config_file_exists():
    named = {path for page in PAGES for path in CONFIG.findall(text(page))}
    assert "configs/utd_mhad.yaml" in named
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert missing == []


def test_every_named_make_target_exists():
    targets = make_targets()
    assert {"demo", "test"} <= targets
    named = {t for page in PAGES for t in MAKE.findall(code_of(text(page)))}
    assert {"demo", "test"} <= named
    assert sorted(named - targets) == []


def test_pages_do_not_point_outside_the_repository_for_the_design():
    """The design lives in docs/design.md; no page sends readers to a file outside the repo."""
    for page in PAGES:
        assert "shared/DESIGN.md" not in text(page), page.name


def command_lines(markdown: str) -> list[str]:
    """Each `xtinyhar ...` command line of the fenced code blocks, continuation lines joined;
    lines with placeholders (`...`, `[optional]`, `$var`) are left out."""
    lines = []
    for block in FENCE.finditer(markdown):
        joined = re.sub(r"\\\n\s*", " ", block.group(0))
        for line in joined.splitlines():
            line = line.strip()
            if not re.match(r"^(\.venv/bin/)?xtinyhar\s", line):
                continue
            if "..." in line or "[" in line or "$" in line or "<" in line:
                continue
            lines.append(line)
    return lines


def test_documented_command_lines_parse():
    """Every complete command line shown in the docs is accepted by the CLI's parser (flags
    and choices; nothing is run)."""
    import shlex

    parser = build_parser()
    checked, bad = 0, []
    for page in PAGES:
        for line in command_lines(text(page)):
            argv = shlex.split(line, comments=True)[1:]
            try:
                parser.parse_args(argv)
            except SystemExit:
                bad.append(f"{page.relative_to(ROOT)}: {line}")
            checked += 1
    assert checked >= 20, f"only {checked} command lines found"
    assert bad == []
