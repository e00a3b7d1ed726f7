"""Copy code snippets from runnable examples into the docs, so the docs cannot rot.

A code block in docs/*.md preceded by `<!-- snippet: examples/tour.py#connect -->` is the
region of that file between the comment lines `-- snippet: connect --` and
`-- end of snippet --` (after `#` or `//`), dedented. The examples run in the test suite, so
every quoted snippet is code that worked against real servers.

Usage:
    python scripts/gen_snippets.py           # rewrite the quoted blocks in docs/*.md
    python scripts/gen_snippets.py --check   # fail when a block differs from its source
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = Path("docs")
_QUOTE = re.compile(r"^<!-- snippet: (?P<path>[^#\s]+)#(?P<name>[a-z0-9-]+) -->$")
_FENCE = "```"


def region(root: Path, path: str, name: str) -> str:
    """Return the dedented lines of snippet `name` in `path`."""
    source = root / path
    if not source.is_file():
        sys.exit(f"snippet source {path} does not exist")
    lines = source.read_text(encoding="utf-8").splitlines()
    begin = re.compile(rf"^\s*(#|//) -- snippet: {re.escape(name)} --$")
    end = re.compile(r"^\s*(#|//) -- end of snippet --$")
    for start, line in enumerate(lines):
        if begin.match(line):
            for stop in range(start + 1, len(lines)):
                if end.match(lines[stop]):
                    return textwrap.dedent("\n".join(lines[start + 1 : stop]))
            sys.exit(f"{path}: snippet {name} has no end")
    sys.exit(f"{path}: no snippet named {name}")


def rewritten(root: Path, text: str) -> str:
    """Return `text` with every quoted code block replaced by its source's region."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        quote = _QUOTE.match(line)
        if quote is None:
            continue
        if index >= len(lines) or not lines[index].startswith(_FENCE):
            sys.exit(f"a code block must follow {line}")
        out.append(lines[index])  # The opening fence, with its language.
        index += 1
        while index < len(lines) and lines[index] != _FENCE:
            index += 1
        out.extend(region(root, quote["path"], quote["name"]).splitlines())
        out.append(_FENCE)
        index += 1
    return "\n".join(out) + "\n"


def main() -> None:
    """Rewrite, or check, the quoted snippets of every document."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a snippet is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="project root (for tests)")
    args = parser.parse_args()
    stale = []
    for document in sorted((args.root / DOCS).glob("*.md")):
        text = document.read_text(encoding="utf-8")
        wanted = rewritten(args.root, text)
        if wanted == text:
            continue
        if args.check:
            stale.append(str(document.relative_to(args.root)))
        else:
            document.write_text(wanted, encoding="utf-8")
            print(f"wrote {document.relative_to(args.root)}")
    if stale:
        sys.exit(f"stale snippets in {', '.join(stale)}: run `make docs`")


if __name__ == "__main__":
    main()
