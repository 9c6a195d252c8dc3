"""Speed of the normalise step against Python's `email` and mail-parser's bare parse, side by side.

Usage: parse_speed.py NORMALISE_SPEED_BINARY RUNS CORPUS_DIR...

Message sets: every message under the CORPUS_DIRs (the differential corpus), and generated 1, 10
and 39 MB messages (a quoted-printable text part, an html part, a base64 attachment: the shape
that dominates large real mail). For each set, RUNS rounds take turns: one pass of Python
(`differential.python_view`: parse, get_body for text and html with their content,
iter_attachments with decoded payloads and their SHA-256, the same view the differential test
compares), then the `normalise_speed` example (emulator-free, in process: `Email::parse` and the
JSON model, then mail-parser 1.0's bare parse; the median of its own 3 passes). Prints the
median of the rounds and the ratios: Python time / normalise time (goal >= 100 on the corpus),
and bare parse time / normalise time, i.e. normalise throughput as a share of mail-parser's
(goal >= 0.3). Prints figures; it never fails on a missed goal.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from differential import python_view

INNER_RUNS = 3


def generated(size):
    head = (
        "From: Bench <bench@example.com>\r\nTo: inbox+bench@example.org\r\n"
        "Subject: generated\r\nDate: Mon, 3 Feb 2025 10:00:00 +0000\r\n"
        "Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="bench"\r\n\r\n--bench\r\n'
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n--alt\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit =E2=80=94 caf=C3=A9.\r\n"
    out = [head, para * max(1, size // 20 // len(para))]
    out.append('--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>')
    out.append("<p>Lorem <b>ipsum</b> dolor &amp; sit.</p>\r\n" * max(1, size // 20 // 40))
    out.append(
        "</body></html>\r\n--alt--\r\n--bench\r\n"
        'Content-Type: application/pdf; name="report.pdf"\r\n'
        'Content-Disposition: attachment; filename="report.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    line = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29k\r\n"
    used = sum(map(len, out))
    out.append(line * max(0, (size - used - 32) // len(line)))
    out.append("--bench--\r\n")
    return "".join(out).encode()


def python_pass(messages):
    start = time.perf_counter()
    for raw in messages:
        try:
            python_view(raw)
        except Exception:  # noqa: BLE001 - a failure costs what it cost, as a refusal does ours
            pass
    return time.perf_counter() - start


def rust_pass(binary, paths):
    out = subprocess.run([binary, str(INNER_RUNS), *paths], check=True, capture_output=True)
    return json.loads(out.stdout)


def measure(binary, runs, label, paths):
    messages = []
    for p in paths:
        with open(p, "rb") as f:
            messages.append(f.read())
    py, ours, bare = [], [], []
    for _ in range(runs):
        py.append(python_pass(messages))
        r = rust_pass(binary, paths)
        ours.append(r["normalise_s"])
        bare.append(r["bare_s"])
    p, o, b = (statistics.median(x) for x in (py, ours, bare))
    mb = sum(map(len, messages)) / 1e6
    print(f"{label:<10}{len(messages):>6}{mb:>8.1f}{p * 1e3:>12.1f}{o * 1e3:>13.2f}{b * 1e3:>10.2f}"
          f"{p / o:>11.0f}x{b / o:>10.2f}{mb / o:>11.0f}")
    sys.stdout.flush()


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binary, runs, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    corpus = sorted(
        os.path.join(root, name)
        for d in dirs
        for root, _, names in os.walk(d)
        for name in names
        if not name.startswith(".") and not name.endswith((".json", ".failed"))
    )
    print(f"medians of {runs} rounds (ms per pass); x python = python / normalise; "
          "x bare = bare parse / normalise (normalise throughput as a share of mail-parser's)")
    print(f"{'set':<10}{'msgs':>6}{'MB':>8}{'python ms':>12}{'normalise ms':>13}{'bare ms':>10}"
          f"{'x python':>12}{'x bare':>10}{'MB/s':>11}")
    measure(binary, runs, "corpus", corpus)
    with tempfile.TemporaryDirectory() as tmp:
        for mb in (1, 10, 39):
            path = os.path.join(tmp, f"{mb}mb.eml")
            with open(path, "wb") as f:
                f.write(generated(mb * 1000 * 1000))
            measure(binary, runs, f"{mb} MB", [path])


if __name__ == "__main__":
    main()
