"""What a hostile client can take from `mailroom serve`: figures, not a pass/fail test.

Usage: smtp_abuse.py MAILROOM_BINARY [--connections N] [--drip SECONDS] [--big-mb MB]

Each scenario runs against a fresh `mailroom serve` on 127.0.0.1 (an ephemeral port, a
temporary state folder, cli/tests/templates/strict.yaml) and prints what the server held:

- idle flood: N connections opened and left idle; how many were greeted (held) and how many
  were refused with 421, and the server's resident memory while it holds them;
- slow drip: one session sending a NOOP every second; whether it is still open after the drip
  time (`--idle-timeout` is set to a third of it when the binary knows the flag);
- rejected recipients: RCPTs to an address no rule takes, until the server ends the session;
- big messages in parallel: six messages of `--big-mb` MB sent at once; peak RSS;
- all-header messages: six 30 MB messages without a body; RSS once they are received;
- smuggling: a bare-LF "." inside DATA followed by a second transaction; messages stored;
- header injection: a CR in HELO; whether it is accepted.

The functional assertions for the same limits are in cli/tests/smtp.rs and the emulator's
session tests; this script only measures.
"""

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cli/tests/templates/strict.yaml"
MIB = 1024 * 1024


def status_kib(pid, field):
    """A `VmRSS`/`VmHWM` figure of /proc/<pid>/status, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, binary, extra=()):
        self.state = tempfile.TemporaryDirectory(prefix="smtp-abuse-")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--json", "--template", str(TEMPLATE),
             "--state-dir", self.state.name, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        banner = self.proc.stdout.readline()
        addr = next(w for w in banner.split() if w.startswith("127.0.0.1:"))
        self.port = int(addr.split(":")[1].rstrip(","))
        # Drain the traces so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def rss_mib(self):
        return status_kib(self.proc.pid, "VmRSS") / 1024

    def peak_mib(self):
        return status_kib(self.proc.pid, "VmHWM") / 1024

    def stored(self):
        return sum(len(files) for _, _, files in os.walk(pathlib.Path(self.state.name) / "s3"))

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.state.cleanup()


class Client:
    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def reply(self):
        text = b""
        while True:
            line = self.file.readline()
            text += line
            if len(line) < 4 or line[3:4] != b"-":
                return text.decode("latin-1")

    def say(self, line):
        self.sock.sendall(line.encode("latin-1") + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def knows(binary, flag):
    out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    return flag in out


def idle_flood(binary, n):
    server = Server(binary)
    held, refused, failed, clients = 0, 0, 0, []
    for _ in range(n):
        try:
            c = Client(server.port, timeout=10)
            greeting = c.reply()
        except OSError:
            failed += 1
            continue
        if greeting.startswith("220"):
            held += 1
            clients.append(c)
        else:
            refused += 1
            c.close()
    time.sleep(1)
    rss = server.rss_mib()
    for c in clients:
        c.close()
    server.stop()
    print(f"idle flood: {n} connections: {held} held, {refused} refused (421), "
          f"{failed} failed; server RSS {rss:.0f} MiB while holding them")


def slow_drip(binary, seconds):
    extra = ["--idle-timeout", str(max(1, seconds // 3))] if knows(binary, "--idle-timeout") else []
    server = Server(binary, extra)
    c = Client(server.port)
    c.reply()
    c.say("EHLO drip.test")
    start, last = time.time(), ""
    while time.time() - start < seconds:
        time.sleep(1)
        try:
            last = c.say("NOOP")
        except OSError:
            last = "connection closed"
        if not last.startswith("250"):
            break
    alive = last.startswith("250")
    print(f"slow drip: a NOOP a second for {seconds} s {' '.join(extra)}: "
          + ("still open" if alive else f"ended after {time.time() - start:.0f} s: {last.strip()}"))
    c.close()
    server.stop()


def rejected_recipients(binary, tries=5000):
    server = Server(binary)
    c = Client(server.port)
    c.reply()
    c.say("EHLO probe.test")
    c.say("MAIL FROM:<a@b.example>")
    answered, last = 0, ""
    for i in range(tries):
        try:
            last = c.say(f"RCPT TO:<u{i}@nowhere.example>")
        except OSError:
            last = "connection closed"
        if not last.startswith("550"):
            break
        answered += 1
    ended = "session ended: " + last.strip() if not last.startswith("550") else "session still open"
    print(f"rejected recipients: {answered} of {tries} RCPTs answered 550; {ended}")
    c.close()
    server.stop()


def send_message(port, data, results, i):
    try:
        c = Client(port, timeout=600)
        c.reply()
        c.say("EHLO big.test")
        c.say("MAIL FROM:<a@b.example>")
        c.say(f"RCPT TO:<user{i}@plain.example.com>")
        c.say("DATA")
        c.sock.sendall(data)
        results[i] = c.say(".").strip()[:3]
        c.say("QUIT")
        c.close()
    except OSError as e:
        results[i] = f"error {e}"


def parallel(binary, data, label):
    server = Server(binary)
    base = server.rss_mib()
    results = [None] * 6
    threads = [threading.Thread(target=send_message, args=(server.port, data, results, i))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(2)
    print(f"{label}: replies {results}; RSS {base:.0f} MiB at start, peak {server.peak_mib():.0f} "
          f"MiB, {server.rss_mib():.0f} MiB after; {server.stored()} stored")
    server.stop()


def big_body(mb):
    line = b"x" * 998 + b"\r\n"
    head = b"From: a@b.example\r\nTo: user@plain.example.com\r\nSubject: big\r\n\r\n"
    return head + line * ((mb * MIB - len(head)) // len(line))


def all_header(mb):
    line = b"X-Pad: " + b"x" * 991 + b"\r\n"
    head = b"From: a@b.example\r\nSubject: all header\r\n"
    return head + line * ((mb * MIB - len(head)) // len(line))


def smuggling(binary):
    server = Server(binary)
    c = Client(server.port)
    c.reply()
    c.say("EHLO smuggle.test")
    c.say("MAIL FROM:<a@b.example>")
    c.say("RCPT TO:<x@plain.example.com>")
    c.say("DATA")
    c.sock.sendall(b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<evil@b.example>\r\n"
                   b"RCPT TO:<y@plain.example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n")
    replies = [c.say(".").strip()]
    c.sock.settimeout(2)
    try:
        while True:
            r = c.reply()
            if not r:
                break
            replies.append(r.strip())
    except OSError:
        pass
    time.sleep(0.5)
    print(f"smuggling: bare-LF '.' then a second transaction: {server.stored()} messages stored; "
          f"replies {[r[:3] for r in replies]}")
    c.close()
    server.stop()


def helo_injection(binary):
    server = Server(binary)
    c = Client(server.port)
    c.reply()
    reply = c.say("EHLO evil\rX-Injected: yes")
    print(f"header injection: EHLO with a bare CR answered {reply.strip()[:3]}")
    c.close()
    server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--connections", type=int, default=3500)
    ap.add_argument("--drip", type=int, default=30)
    ap.add_argument("--big-mb", type=int, default=35)
    args = ap.parse_args()
    print(f"mailroom serve abuse figures ({args.binary}, {os.cpu_count()} CPUs)")
    idle_flood(args.binary, args.connections)
    slow_drip(args.binary, args.drip)
    rejected_recipients(args.binary)
    parallel(args.binary, big_body(args.big_mb), f"six parallel {args.big_mb} MB messages")
    parallel(args.binary, all_header(30), "six parallel 30 MB all-header messages")
    smuggling(args.binary)
    helo_injection(args.binary)


if __name__ == "__main__":
    sys.exit(main())
