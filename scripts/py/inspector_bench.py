"""The inspector under load: `mailroom serve` with its inspector open (a live-update client
connected to /api/events), Postfix's smtp-source sending M messages over S parallel SMTP
sessions, every message run through the whole pipeline of template.yaml (seven actions, the
functions in process) and recorded. Prints messages per second from the first connection to
the last message recorded, how many were recorded (none may be lost), how many live updates
the client saw, and the server's peak and final RSS.

Usage: inspector_bench.py MAILROOM_BIN [--messages M] [--sessions S] [--length BYTES]
Exit 1 when a message is lost or smtp-source fails; the figures themselves are not asserted.
"""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def status_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def total(ui):
    host, port = ui.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/api/messages?limit=1")
    body = json.loads(c.getresponse().read())
    c.close()
    return body["total"]


def listen_events(ui, seen, stop):
    host, port = ui.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    c.request("GET", "/api/events")
    r = c.getresponse()
    while not stop.is_set():
        line = r.fp.readline()
        if not line:
            break
        if line.startswith(b"event: message"):
            seen[0] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--length", type=int, default=2000)
    a = ap.parse_args()
    state = tempfile.TemporaryDirectory(prefix="inspector-bench-")
    proc = subprocess.Popen(
        [a.binary, "serve", "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0",
         "--state-dir", state.name, "--keep", "0", "--max-connections", str(a.sessions * 2)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    banner = proc.stdout.readline()
    m = re.search(r"SMTP on ([\d.]+:\d+).*inspector on http://([\d.]+:\d+)/", banner)
    if not m:
        print(f"no banner: {banner!r} {proc.stderr.read()}", file=sys.stderr)
        return 1
    smtp, ui = m.group(1), m.group(2)
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    seen, stop = [0], threading.Event()
    threading.Thread(target=listen_events, args=(ui, seen, stop), daemon=True).start()
    time.sleep(0.5)
    rss_idle = status_kib(proc.pid, "VmRSS") / 1024
    t0 = time.monotonic()
    src = subprocess.run(
        ["smtp-source", "-s", str(a.sessions), "-m", str(a.messages), "-l", str(a.length),
         "-f", "carla@example.org", "-t", "support@example.com", "-S", "load", "-M", "bench.test",
         smtp],
        capture_output=True, text=True)
    sent = time.monotonic() - t0
    recorded = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        recorded = total(ui)
        if recorded >= a.messages:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    time.sleep(0.5)
    stop.set()
    rss_end = status_kib(proc.pid, "VmRSS") / 1024
    hwm = status_kib(proc.pid, "VmHWM") / 1024
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    print(f"smtp-source: {a.messages} messages of {a.length} bytes over {a.sessions} sessions "
          f"(exit {src.returncode}{', ' + src.stderr.strip()[:200] if src.returncode else ''})")
    print(f"recorded {recorded} of {a.messages} ({a.messages - recorded} lost); "
          f"{seen[0]} live updates reached the open client")
    print(f"{a.messages / elapsed:.0f} messages/s through the whole pipeline "
          f"({elapsed:.1f} s to the last record; smtp-source done after {sent:.1f} s)")
    print(f"serve RSS: {rss_idle:.0f} MiB idle, {rss_end:.0f} MiB after, peak {hwm:.0f} MiB")
    return 0 if src.returncode == 0 and recorded == a.messages else 1


if __name__ == "__main__":
    sys.exit(main())
