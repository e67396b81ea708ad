#!/usr/bin/env python3
"""Writes the bulk-load benchmark's data, deterministically (seeded), once.

    gen.py ROWS BATCH OUTDIR

Table: t (id BIGINT, name TEXT, score DOUBLE PRECISION, created TIMESTAMP, flag BOOLEAN)

Writes, in OUTDIR:
  t.tsv         COPY text format (tab-separated, backslash escapes, \\N for NULL)
  t.csv         COPY CSV format (quoted where needed, unquoted empty field = NULL)
  inserts.sql   the same rows as INSERT INTO t VALUES (...),(...) statements of
                BATCH rows each, one statement per line
  expected.txt  the answer of CHECK_SQL (see run.sh) on the loaded table, one
                line, '|'-separated as `psql -At` prints it

Row n (1-based): id = n; name = 'name-<n>' plus, on some rows, a suffix with a
space, comma, quotes, backslash, tab or non-ASCII letter (so both formats'
quoting and escaping are exercised); score = a seeded random value with two
decimals, NULL on every 50th row; created = 2026-01-01 00:00:00 + (n - 1)
seconds; flag = a seeded coin toss.
"""

import datetime
import os
import random
import sys

SEED = 20260101
BASE = datetime.datetime(2026, 1, 1)
BASE_EPOCH = int((BASE - datetime.datetime(1970, 1, 1)).total_seconds())

# Suffixes appended to 'name-<n>' on some rows; "" keeps the plain name.
SUFFIXES = [
    "",
    "",
    "",
    "",
    " smith",
    ", jr.",
    ' "quoted"',
    " o'brien",
    " zoë",
    " naïve café",
    " back\\slash",
    " tab\there",
]


def tsv_field(s):
    return (
        s.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def csv_field(s):
    if s == "" or any(c in s for c in ',"\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    rows, batch, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if rows < 1 or batch < 1:
        sys.exit("ROWS and BATCH must be positive")
    rng = random.Random(SEED)
    sum_id = 0
    n_score = 0
    sum_cents = 0
    n_flag = 0
    sum_len = 0
    sum_epoch = 0
    with open(os.path.join(out, "t.tsv"), "w", encoding="utf-8", newline="\n") as tsv, open(
        os.path.join(out, "t.csv"), "w", encoding="utf-8", newline="\n"
    ) as csv, open(os.path.join(out, "inserts.sql"), "w", encoding="utf-8", newline="\n") as sql:
        values = []
        for n in range(1, rows + 1):
            name = f"name-{n}" + SUFFIXES[rng.randrange(len(SUFFIXES))]
            score = None if n % 50 == 0 else f"{rng.uniform(-1000.0, 1000.0):.2f}"
            created = (BASE + datetime.timedelta(seconds=n - 1)).strftime("%Y-%m-%d %H:%M:%S")
            flag = rng.random() < 0.5

            sum_id += n
            n_score += score is not None
            sum_cents += int(score.replace(".", "")) if score is not None else 0
            n_flag += flag
            sum_len += len(name)
            sum_epoch += BASE_EPOCH + n - 1

            tsv.write(
                f"{n}\t{tsv_field(name)}\t{score if score is not None else chr(92) + 'N'}"
                f"\t{created}\t{'t' if flag else 'f'}\n"
            )
            csv.write(
                f"{n},{csv_field(name)},{score if score is not None else ''}"
                f",{created},{'t' if flag else 'f'}\n"
            )
            values.append(
                f"({n},{sql_str(name)},{score if score is not None else 'NULL'}"
                f",'{created}',{'true' if flag else 'false'})"
            )
            if len(values) == batch:
                sql.write("INSERT INTO t VALUES " + ",".join(values) + ";\n")
                values = []
        if values:
            sql.write("INSERT INTO t VALUES " + ",".join(values) + ";\n")
    with open(os.path.join(out, "expected.txt"), "w") as f:
        f.write(f"{rows}|{sum_id}|{n_score}|{sum_cents}|{n_flag}|{sum_len}|{sum_epoch}\n")


if __name__ == "__main__":
    main()
