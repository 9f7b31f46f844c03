#!/usr/bin/env python3
"""The shipped Tera templates as one mailmerge (Jinja2) template, for the comparison.

    python3 bench/mailmerge_template.py write CONFIG_DIR OUT
        Reads CONFIG_DIR/config.toml ([sender], [incident]) and CONFIG_DIR/templates/
        (subject.txt, body.txt, body.html) and writes a mailmerge template with the same
        text, the same conditionals on `affected` and `confirmed`, as multipart/alternative
        (text/plain + text/html, the HTML part autoescaped like Tera does for .html).

    MAILMERGE_PYTHON bench/mailmerge_template.py compare TEMPLATE CSV PREVIEW_DIR N
        Renders the first N CSV rows with Jinja2 (run it with the mailmerge venv's python)
        and compares the text and HTML parts with the .eml files `utskick preview` wrote.
        Prints one line: how many are identical, and the mean body lengths of both.

mailmerge has no config-wide context and no custom filters, so [incident] becomes a
`{% set incident = ... %}` literal at the top of the template and the `svensk_datum`
filter becomes a lookup in two precomputed tables; `recipient.X` becomes `X` (mailmerge
passes the CSV row as the context) and the `affected` list is split with `|` once per row
as utskick does (trimmed, empties dropped).
"""

import datetime
import email
import email.policy
import glob
import json
import os
import re
import sys
import tomllib

BOUNDARY = "utskick-bench-boundary-7f3a"
WEEKDAYS = ["måndagen", "tisdagen", "onsdagen", "torsdagen", "fredagen", "lördagen", "söndagen"]
MONTHS = ["januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti",
          "september", "oktober", "november", "december"]


def svensk_datum(iso, month=True):
    """As utskick's filter: `fredagen den 6 oktober 2023`, or `fredagen den 6`."""
    d = datetime.date.fromisoformat(iso[:10])
    wd = WEEKDAYS[d.weekday()]
    if not month:
        return f"{wd} den {d.day}"
    return f"{wd} den {d.day} {MONTHS[d.month - 1]} {d.year}"


def convert(source):
    """One Tera template's source as Jinja2 for mailmerge."""
    text = source
    text = re.sub(r"\brecipient\.affected\b", "_affected", text)
    text = re.sub(r"\brecipient\.(\w+)", r"\1", text)
    text = re.sub(r"([\w.]+) \| svensk_datum\(manad=false\)", r"_datum_kort[\1]", text)
    text = re.sub(r"([\w.]+) \| svensk_datum\b", r"_datum_lang[\1]", text)
    if "svensk_datum" in text:
        sys.exit("mailmerge_template.py: a svensk_datum use this converter does not know")
    return text


def write(config_dir, out):
    with open(os.path.join(config_dir, "config.toml"), "rb") as f:
        config = tomllib.load(f)
    tdir = os.path.join(config_dir, config.get("templates", {}).get("dir", "templates"))
    incident = config.get("incident", {})
    dates = incident.get("datum", {})
    lang = {v: svensk_datum(v) for v in dates.values()}
    kort = {v: svensk_datum(v, month=False) for v in dates.values()}

    def read(name):
        path = os.path.join(tdir, name)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return f.read()

    subject = convert(read("subject.txt")).strip()
    text = convert(read("body.txt"))
    html = read("body.html")
    sender = config["sender"]
    lit = lambda v: json.dumps(v, ensure_ascii=False)  # JSON is a Jinja2 literal
    parts = [
        "{%- set incident = " + lit(incident) + " -%}\n",
        "{%- set campaign = " + lit(config.get("campaign", "")) + " -%}\n",
        "{%- set _datum_lang = " + lit(lang) + " -%}\n",
        "{%- set _datum_kort = " + lit(kort) + " -%}\n",
        # utskick splits list columns once per row; so does this (the templates name
        # `recipient.affected` in every test on it).
        "{%- set _affected = (affected.split('|') | map('trim') | reject('equalto', '') | list) -%}\n",
        "TO: {{ name }} <{{ email }}>\n",
        f"FROM: {sender['from']}\n",
        f"REPLY-TO: {sender.get('reply_to', '')}\n",
        f"SUBJECT: {subject}\n",
        "MIME-Version: 1.0\n",
        f'Content-Type: multipart/alternative; boundary="{BOUNDARY}"\n',
        "\n",
        f"--{BOUNDARY}\n",
        "Content-Type: text/plain; charset=utf-8\n",
        # The blank line as output, not template data: the `{#-` opening body.txt would
        # otherwise strip it and glue the body to the part's header.
        "{{ '\\n' }}",
        text,
        "\n",
    ]
    if html is not None:
        parts += [
            f"--{BOUNDARY}\n",
            "Content-Type: text/html; charset=utf-8\n",
            "\n",
            "{% autoescape true %}" + convert(html) + "{% endautoescape %}\n",
        ]
    parts.append(f"--{BOUNDARY}--\n")
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(parts))


def bodies(msg, decode=True):
    """(text, html) of a parsed message, line ends normalized, trailing space dropped;
    `decode=False` for a message parsed from a str (no transfer encoding yet)."""
    text = html = None
    for part in msg.walk():
        if part.get_content_maintype() != "text":
            continue
        body = part.get_payload(decode=True).decode("utf-8") if decode else part.get_payload()
        body = body.replace("\r\n", "\n").rstrip()
        if part.get_content_subtype() == "plain":
            text = body
        elif part.get_content_subtype() == "html":
            html = body
    return text, html


def compare(template, csv_path, preview_dir, n):
    import csv
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.dirname(template)),
                             undefined=jinja2.StrictUndefined)
    tpl = env.get_template(os.path.basename(template))
    same_text = same_html = done = 0
    lens = [0, 0, 0, 0]
    first_diff = None
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            if done >= n:
                break
            files = glob.glob(os.path.join(preview_dir, f"{row['customer_id']}-*.eml"))
            if not files:
                continue
            with open(files[0], "rb") as g:
                ours = bodies(email.message_from_bytes(g.read(), policy=email.policy.default))
            theirs = bodies(email.message_from_string(tpl.render(row)), decode=False)
            done += 1
            same_text += ours[0] == theirs[0]
            same_html += ours[1] == theirs[1]
            lens[0] += len(ours[0] or "")
            lens[1] += len(ours[1] or "")
            lens[2] += len(theirs[0] or "")
            lens[3] += len(theirs[1] or "")
            if first_diff is None and ours != theirs:
                first_diff = row["customer_id"]
    if done == 0:
        print("equivalence: no preview file to compare with")
        return
    print(f"equivalence over {done} rows: text identical {same_text}/{done}, html identical "
          f"{same_html}/{done}; mean chars utskick text {lens[0] // done} html {lens[1] // done}, "
          f"mailmerge text {lens[2] // done} html {lens[3] // done}"
          + (f"; first difference at key {first_diff}" if first_diff else ""))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
