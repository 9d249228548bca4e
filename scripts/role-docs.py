#!/usr/bin/env python3
"""Write each role's variable tables into its README from meta/argument_specs.yml.

The argument specs are the one source of what a variable means and its
default; defaults/main.yml must agree with them (same names, same defaults),
and the README tables are generated from them. `--check` (run by `make lint`)
fails when a README table is stale, a spec and defaults/main.yml disagree, or
a README's "Entry points" section leaves an entry point out.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"
BEGIN, END = "<!-- BEGIN GENERATED: variables (scripts/role-docs.py) -->", "<!-- END GENERATED: variables -->"
# A default longer than this is left to defaults/main.yml; the table says so.
LONGEST_DEFAULT = 60


def markdown(text):
    """Ansible's C(code) markup (ansible-doc) as Markdown code."""
    if isinstance(text, list):
        text = " ".join(text)
    return re.sub(r"C\(([^)]*)\)", r"`\1`", text).replace("|", "\\|")


def shown_default(value, required=True):
    if value is None:
        return "(required)" if required else "(unset)"
    shown = value if isinstance(value, str) and value else json.dumps(value)
    if len(shown) > LONGEST_DEFAULT:
        return "(long: see `defaults/main.yml`)"
    return f"`{shown}`".replace("|", "\\|")


def table(options, defaults):
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, spec in options.items():
        default = defaults[name] if name in defaults else spec.get("default")
        rows.append(f"| `{name}` | {shown_default(default, spec.get('required', 'default' not in spec))} "
                    f"| {markdown(spec['description'])} |")
    return "\n".join(rows)


def disagreements(role, specs, defaults):
    """Where defaults/main.yml and the argument specs say different things: every default is
    specified by some entry point, every option of main has a default, and the values agree."""
    every = {name: option for spec in specs.values() for name, option in spec.get("options", {}).items()}
    found = [f"{role}: {name} is in defaults/main.yml but in no argument spec"
             for name in defaults if name not in every]
    for name in specs.get("main", {}).get("options", {}):
        # required: false with no default is an input left unset by design.
        if name not in defaults and "required" not in every[name]:
            found.append(f"{role}: {name} is in the main argument spec but not in defaults/main.yml")
    for name, option in every.items():
        if name in defaults and "default" in option and defaults[name] != option["default"]:
            found.append(f"{role}: {name} defaults to {defaults[name]!r} but its spec says {option['default']!r}")
    return found


def unlisted_entry_points(readme_text, specs):
    """Entry points the README's hand-written "## Entry points" section does not name."""
    listed = readme_text.split("## Entry points", 1)[1].split("\n## ", 1)[0] if "## Entry points" in readme_text else ""
    return [entry for entry in specs if f"`{entry}`" not in listed]


def section(specs, defaults):
    """The generated part: main's variables, then each other entry point and the inputs only it takes."""
    main_options = specs.get("main", {}).get("options", {})
    parts = [table(main_options, defaults)] if "main" in specs else []
    for entry, spec in specs.items():
        if entry == "main":
            continue
        parts.append(f"#### Entry point `{entry}`\n\n{markdown(spec['short_description'])}.")
        own = {name: option for name, option in spec.get("options", {}).items() if name not in main_options}
        shared = [name for name in spec.get("options", {}) if name in main_options]
        if own:
            parts.append(table(own, {}))
        if shared:
            parts.append("Also reads: " + ", ".join(f"`{name}`" for name in shared) + ".")
    return "\n\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail instead of writing when anything is stale")
    args = parser.parse_args()

    problems = []
    for role_dir in sorted(path for path in ROLES.iterdir() if path.is_dir()):
        specs = yaml.safe_load((role_dir / "meta/argument_specs.yml").read_text())["argument_specs"]
        defaults_file = role_dir / "defaults/main.yml"
        defaults = (yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else None) or {}
        problems += disagreements(role_dir.name, specs, defaults)

        readme = role_dir / "README.md"
        text = readme.read_text()
        if BEGIN not in text or END not in text:
            problems.append(f"{readme}: lacks the markers {BEGIN} … {END}")
            continue
        problems += [f"{readme}: the section 'Entry points' does not name `{entry}`"
                     for entry in unlisted_entry_points(text, specs)]
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        fresh = f"{before}{BEGIN}\n{section(specs, defaults)}\n{END}{after}"
        if fresh != text:
            if args.check:
                problems.append(f"{readme}: the variable tables are stale; run `make docs`")
            else:
                readme.write_text(fresh)
                print(f"wrote {readme}")
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
