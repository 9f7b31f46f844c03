#!/usr/bin/env python3
"""Set keys in an utskick config.toml in place, keeping its comments.

    python3 bench/set_config.py CONFIG section.key=TOML_VALUE ...

e.g. `sending.rate='"600/min"'` or `smtp.port=2526`. The first uncommented `key = ...`
line inside `[section]` is replaced; a key the section lacks is added after its header.
`.key` (empty section) means a top-level key. The result must parse as TOML and hold the
values asked for, or the script fails.
"""

import re
import sys
import tomllib


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    wanted = []
    for arg in sys.argv[2:]:
        dotted, value = arg.split("=", 1)
        section, key = dotted.rsplit(".", 1)
        wanted.append((section, key, value))
        current = ""
        done = False
        header_at = 0 if section == "" else None
        for i, line in enumerate(lines):
            m = re.match(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
            if m:
                current = m.group(1).strip()
                if current == section:
                    header_at = i
                continue
            if current == section and re.match(rf"^\s*{re.escape(key)}\s*=", line):
                lines[i] = f"{key} = {value}"
                done = True
                break
        if not done:
            if header_at is None:
                sys.exit(f"set_config.py: no [{section}] in {path}")
            lines.insert(header_at + (1 if section else 0), f"{key} = {value}")
    text = "\n".join(lines)
    parsed = tomllib.loads(text)
    for section, key, value in wanted:
        table = parsed
        for part in filter(None, section.split(".")):
            table = table[part]
        if table.get(key) != tomllib.loads(f"v = {value}")["v"]:
            sys.exit(f"set_config.py: {section}.{key} did not take the value {value}")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
