#!/usr/bin/env python3
"""Check the relative links of the project's Markdown files.

For every Markdown file of the repository (README.md, docs/**/*.md,
roles/*/README.md, ...; not under .venv/, .cache/, .git/ or the benchmark's
results/), every `[text](target)` and `![alt](target)` link, and every
reference definition `[label]: target`, outside code, is checked:

- a target with a scheme (http:, https:, mailto:, ...) is skipped;
- a relative path must name a file or directory that exists, relative to the
  Markdown file (or to the repository's root when it starts with `/`);
- a `#fragment` on a Markdown file, or on its own (the same file), must be a
  heading's anchor in that file, made as GitHub makes it: the heading's text
  lowercased, everything but letters, digits, spaces, hyphens and
  underscores removed, spaces made hyphens, and `-1`, `-2`, ... added to
  repeated ones; headings inside fenced code blocks do not count.

Each broken link is printed as `file:line: target`; the exit status is 1 if
there is any. Python's standard library only.
"""
import os
import re
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".venv", ".cache", ".git", ".pytest_cache", "__pycache__", "node_modules"}
# Written by `make bench` (ignored by git); each run's report links its own chart.
SKIP_ROOT_DIRS = {"results"}

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
HTML_ANCHOR = re.compile(r"""<a\s[^>]*\b(?:name|id)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
# [text](target "title"): the text may hold one level of brackets; the
# target is <...> or has no spaces, with balanced parentheses.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]\\]|\\.|\[(?:[^\[\]\\]|\\.)*\])*\]"
    r"\(\s*(<[^<>\n]*>|(?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[((?:[^\[\]\\]|\\.)+)\]:[ \t]*(<[^<>\n]*>|\S+)", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def markdown_files(root):
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        subdirs[:] = sorted(name for name in subdirs
                            if name not in SKIP_DIRS and not (here == root and name in SKIP_ROOT_DIRS))
        for name in sorted(files):
            if name.lower().endswith(".md"):
                yield here / name


def blank(text):
    """The same text with every character but newlines made a space (keeps offsets and line numbers)."""
    return re.sub(r"[^\n]", " ", text)


def without_code(text):
    """The text with fenced code blocks and code spans blanked out, offsets kept."""
    lines = text.split("\n")
    out = []
    fence = None
    for line in lines:
        match = FENCE.match(line)
        if fence is None:
            if match and not (match.group(1)[0] == "`" and "`" in line[match.end():]):
                fence = match.group(1)
                out.append(blank(line))
            else:
                out.append(line)
        else:
            out.append(blank(line))
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                    and not line[match.end():].strip():
                fence = None
    text = "\n".join(out)
    return blank_code_spans(text)


def blank_code_spans(text):
    """Blank `code spans`: a run of n backticks up to the next run of exactly n, within one paragraph."""
    result = list(text)
    runs = list(re.finditer(r"`+", text))
    index = 0
    while index < len(runs):
        opening = runs[index]
        closing = None
        for later in range(index + 1, len(runs)):
            if re.search(r"\n[ \t]*\n", text[opening.end():runs[later].start()]):
                break
            if len(runs[later].group()) == len(opening.group()):
                closing = later
                break
        if closing is None:
            index += 1
            continue
        for offset in range(opening.start(), runs[closing].end()):
            if result[offset] != "\n":
                result[offset] = " "
        index = closing + 1
    return "".join(result)


def heading_text(raw):
    """A heading's text as GitHub renders it, roughly: links to their text, images to their alt, no markup."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"<[^>]+>", "", text)
    return text.strip()


def slug(text):
    text = heading_text(text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    """The anchors GitHub makes for the file's headings (and its explicit <a name/id>)."""
    if path in cache:
        return cache[path]
    text = path.read_text(encoding="utf-8")
    found = set()
    counts = {}

    def add(heading):
        base = slug(heading)
        if base in counts:
            counts[base] += 1
            found.add(f"{base}-{counts[base]}")
        else:
            counts[base] = 0
            found.add(base)

    fence = None
    previous = ""  # the previous line, if it may be a setext heading's text
    for line in text.split("\n"):
        match = FENCE.match(line)
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                    and not line[match.end():].strip():
                fence = None
            continue
        if match and not (match.group(1)[0] == "`" and "`" in line[match.end():]):
            fence = match.group(1)
            previous = ""
            continue
        found.update(HTML_ANCHOR.findall(line))
        atx = ATX.match(line)
        if atx:
            add(atx.group(2) or "")
            previous = ""
            continue
        if previous and SETEXT.match(line):
            add(previous)
            previous = ""
            continue
        stripped = line.strip()
        paragraph_text = (stripped and not line.startswith(("    ", "\t")) and not stripped.startswith(("|", ">"))
                          and not re.match(r"^([-*+]|\d+[.)])\s", stripped))
        previous = stripped if paragraph_text else ""
    cache[path] = found
    return found


def check(path, root):
    text = path.read_text(encoding="utf-8")
    visible = without_code(text)
    targets = [(m.start(1), m.group(1)) for m in INLINE_LINK.finditer(visible)]
    targets += [(m.start(2), m.group(2)) for m in REFERENCE_DEF.finditer(visible)]
    broken = []
    for offset, target in sorted(targets):
        line = visible.count("\n", 0, offset) + 1
        raw = target[1:-1] if target.startswith("<") and target.endswith(">") else target
        raw = raw.strip()
        if not raw or SCHEME.match(raw):
            continue
        location, _, fragment = raw.partition("#")
        location = urllib.parse.unquote(location)
        fragment = urllib.parse.unquote(fragment)
        if location:
            base = root if location.startswith("/") else path.parent
            destination = (base / location.lstrip("/")).resolve()
            if not destination.exists():
                broken.append((line, target))
                continue
        else:
            destination = path
        if fragment and destination.is_file() and destination.suffix.lower() == ".md":
            if fragment not in anchors(destination):
                broken.append((line, target))
    return broken


def main():
    root = ROOT
    failed = False
    for path in markdown_files(root):
        for line, target in check(path, root):
            print(f"{path.relative_to(root)}:{line}: {target}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
