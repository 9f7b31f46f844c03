#!/usr/bin/env python3
"""Write a fictional recipient CSV for the benchmarks.

    python3 bench/gen_csv.py ROWS PATH

Columns as in recipients.example.csv:
customer_id,name,email,personnummer,address,affected,confirmed

Swedish names, a quoted two-line street address ("Storgatan 1\\n123 45 Storstad"),
varied `affected` lists, `confirmed` ja/nej. Every address is unique and @example.se
(no shared household addresses, so the run has no warnings to collect). The data are
made up and deterministic: the same ROWS always give the same bytes. Keys are
100001, 100002, ... (row i has key 100000 + i).
"""

import csv
import sys
import unicodedata

FIRST = [
    "Anna", "Åsa", "Märta", "Karin", "Eva", "Lise-Lott", "Birgitta", "Ingrid", "Kerstin",
    "Maria", "Elin", "Sofia", "Linnéa", "Ebba", "Signe", "Astrid", "Ylva", "Agneta",
    "Per-Erik", "Anders", "Göran", "Östen", "Jöns", "Lars", "Björn", "Mikael", "Johan",
    "Nils", "Erik", "Olof", "Sven", "Åke", "Örjan", "Mohammed", "Ali", "Leila", "Noor",
    "Bengt", "Gunnar", "Torbjörn",
]
LAST = [
    "Öberg", "Lindqvist", "Sjöström", "Holm", "Åkesson", "Ek", "Ärlig", "Fröjd", "Blom",
    "Ström-Dahl", "Al-Sayed", "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson",
    "Larsson", "Olsson", "Persson", "Svensson", "Gustafsson", "Pettersson", "Jönsson",
    "Lindström", "Bäckström", "Håkansson", "Söderberg", "Näslund", "Wåhlin", "Lövgren",
]
STREETS = [
    "Storgatan", "Björkvägen", "Ängsgränd", "Kyrkbacken", "Lövstigen", "Västra Långgatan",
    "Sjövägen", "Åkervägen", "Hamngatan", "Backsippevägen", "Rosenlundsgatan",
    "Drottninggatan", "Kungsgatan", "Skolvägen", "Järnvägsgatan", "Tallbacken",
]
TOWNS = [
    "Storstad", "Lillby", "Åby", "Älvsjö", "Örebro", "Göteborg", "Malmö", "Umeå",
    "Västerås", "Jönköping", "Norrköping", "Sundsvall", "Luleå", "Skövde",
]
# Varied lists over the categories the templates know (every code one that the shipped
# config's [recipients.values] allows: any other would make the row invalid).
AFFECTED = [
    "namn|adress|personnummer|bank",
    "namn|adress|personnummer",
    "namn|epost",
    "namn|adress",
    "namn|adress|bank",
    "namn|epost|telefon",
    "namn|adress|personnummer|bank|epost|telefon",
    "namn|telefon",
    "namn|adress|personnummer|epost",
    "namn",
    "namn|adress|telefon",
    "",
]


def ascii_fold(text):
    """`Åsa Öberg` -> `asa.oberg` for the local part of an address."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return "".join(c if c.isalnum() or c == "-" else "." for c in text.lower())


def row(i):
    """The i-th recipient (0-based), as a list of cells."""
    # Cheap deterministic mixing instead of random: 1,000,000 rows in a few seconds.
    h = (i * 2654435761 + 12345) & 0xFFFFFFFF
    first = FIRST[h % len(FIRST)]
    last = LAST[(h >> 8) % len(LAST)]
    key = str(100000 + i + 1)
    name = f"{first} {last}"
    email = f"{ascii_fold(first)}.{ascii_fold(last)}.{key}@example.se"
    year = 1940 + (h >> 3) % 66
    month = 1 + (h >> 5) % 12
    day = 1 + (h >> 9) % 28
    pnr = f"{year}{month:02d}{day:02d}-{(h >> 11) % 10000:04d}"
    street = STREETS[(h >> 13) % len(STREETS)]
    number = 1 + (h >> 17) % 120
    postcode = 10000 + (h >> 7) % 89999
    town = TOWNS[(h >> 19) % len(TOWNS)]
    if h % 7 == 0:
        first_line = f"c/o {last}, {street} {number}"  # a comma inside the quotes
    elif h % 5 == 0:
        first_line = f"{street} {number} lgh {1000 + h % 400}"
    else:
        first_line = f"{street} {number}"
    address = f"{first_line}\n{postcode // 100} {postcode % 100:02d} {town}"
    affected = AFFECTED[(h >> 4) % len(AFFECTED)]
    confirmed = "ja" if (h >> 6) % 3 else "nej"
    return [key, name, email, pnr, address, affected, confirmed]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_csv.py ROWS PATH")
    rows = int(sys.argv[1])
    with open(sys.argv[2], "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["customer_id", "name", "email", "personnummer", "address", "affected", "confirmed"])
        for i in range(rows):
            w.writerow(row(i))


if __name__ == "__main__":
    main()
