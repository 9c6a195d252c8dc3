"""Peak resident memory of every function that reads the raw mail on every hostile shape, against
75 % of each function's MemorySize in the template.

Usage: function_rss.py FUNCTION_RSS_BINARY TEMPLATE [SIZE_MB ...]   (sizes default to 10 20 39)

The shapes are peak_rss.py's. For each shape, size and function, a fresh process of the
`function_rss` example (emulator/examples/function_rss.rs) builds the function from the template
as the emulator does and runs its real handler once against the local adapters (a folder for S3
and SQS, JSON lines for SNS, an outbox folder for SES); api posts its webhook over loopback HTTP to a receiver here that
reads and discards it. The process reports its own high-water mark (VmHWM); the result column
ends with each handler's outcome (`stored`, `published`, `delivered`, `forwarded`, or why not). Lambda's
MemorySize is in MiB. Exits 1 when a run fails or a function goes over 75 % of its MemorySize.
"""

import concurrent.futures
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

from cfn_template import Template
from peak_rss import FUNCTION_SHAPES, REFUSED

# The functions measured are those whose environment in the template names the raw bucket: the
# ones that read the raw mail. stop is not among them: it only asks the object's size (a HEAD, for
# its MAILROOM_MAX_SIZE rule), and the template gives it no bucket.
RAW_BUCKET_VAR = "MAILROOM_RAW_BUCKET"
# What each handler reports when it did its whole job; anything else fails the run, however little
# memory it took (a handler that gave up early proves no bound). A function that reads the raw mail
# and has no entry here is an error, not a function left unmeasured.
DONE = {"store": "stored", "fanout": "published", "api": "delivered", "forward": "forwarded"}
# Template parameters a function needs to do its job on the event function_rss.rs sends
# (events/lambda/store-event.json, to support@example.com): forward forwards nothing without a map.
PARAMS = {"forward": ["ForwardMap=support@example.com=owner@gmail.example"]}
# What a function that reads the raw mail does with a shape refused by design (peak_rss.REFUSED:
# a header block over the model's 1 MiB): store refuses it with a typed error (Lambda retries,
# then the invocation DLQ; the raw mail stays), api dead-letters its delivery; fanout publishes a
# summary from SES's headers and forward sends a digest, as for any mail.
REFUSED_AS = {"store": "error: ", "api": "dead_lettered"}
SHARE = 0.75
TIMEOUT_S = 300


def memory_sizes(template_path):
    """MemorySize (MiB) of each function that reads the raw mail, by binary, from the function's
    own property or Globals.Function."""
    t = Template(template_path)
    sizes = {}
    for logical in t.of_type("AWS::Serverless::Function"):
        if RAW_BUCKET_VAR not in t.function_env(logical):
            continue
        binary = t.function_binary(logical)
        size = t.function_prop(logical, "MemorySize")
        if not isinstance(size, int):
            sys.exit(f"{logical}: MemorySize {size!r} is not a number")
        if binary not in DONE:
            sys.exit(f"{logical} ({binary}) reads the raw mail but {__file__} has no DONE status for it")
        sizes[binary] = size
    if not sizes:
        sys.exit(f"{template_path}: no function has {RAW_BUCKET_VAR}")
    return sizes


class Discard(http.server.BaseHTTPRequestHandler):
    """The webhook receiver: reads each body in chunks and answers 200."""

    def do_POST(self):
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def run(binary, function, raw_path, state, url):
    cmd = [binary, function, raw_path, state, f"WebhookUrl={url}", *PARAMS.get(function, [])]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    text = out.stdout.decode(errors="replace")
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "error" in fields and fields.get("peak_kib", "").isdigit():
        return int(fields["peak_kib"]) / 1024, "error: " + fields["error"][:300]
    if out.returncode != 0 or not fields.get("peak_kib", "").isdigit():
        err = out.stderr.decode(errors="replace").strip().splitlines()
        return None, f"exit {out.returncode}, no measurement: {(err or ['?'])[-1][:100]}"
    try:
        outcomes = json.loads(fields.get("result", "[]"))
        status = outcomes[0].get("status", "?") if outcomes else "-"
        # forward's outcome is "forwarded" even when SES refused a destination: that is not done.
        refused = {d.get("status") for o in outcomes for d in o.get("deliveries", [])} - {"sent"}
        if refused:
            status += "/" + ",".join(sorted(refused))
    except (ValueError, AttributeError):
        status = "?"
    return int(fields["peak_kib"]) / 1024, status


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, template_path = sys.argv[1], sys.argv[2]
    sizes_mb = [int(s) for s in sys.argv[3:]] or [10, 20, 39]
    memory = memory_sizes(template_path)
    functions = list(memory)
    limits = {f: SHARE * memory[f] for f in functions}

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Discard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    print("peak RSS in MiB per function; limit = 75 % of MemorySize: "
          + ", ".join(f"{f} {limits[f]:.0f} (of {memory[f]})" for f in functions))
    print(f"{'shape':<22}{'input MB':>9}" + "".join(f"{f:>9}" for f in functions) + "  result")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = os.path.join(tmp, "msg.eml")
        for name, make in FUNCTION_SHAPES:
            for mb in sizes_mb:
                with open(raw_path, "wb") as f:
                    f.write(make(mb * 1000 * 1000))
                size = os.path.getsize(raw_path)
                cells, problems, statuses = [], [], []

                def measure(function):
                    state = tempfile.mkdtemp(dir=tmp)
                    try:
                        return run(binary, function, raw_path, state, url)
                    finally:
                        subprocess.run(["rm", "-rf", state], check=False)

                # One process per function, as many at once as there are cores: each reports its
                # own high-water mark, which does not depend on what runs beside it.
                with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                    measured = list(pool.map(measure, functions))
                for function, (peak, result) in zip(functions, measured):
                    if peak is None:
                        cells.append("failed")
                        problems.append(f"{function} {result}")
                    else:
                        cells.append(f"{peak:.1f}")
                        statuses.append(result)
                        if peak > limits[function]:
                            problems.append(f"{function} OVER")
                        refused = name in REFUSED and function in REFUSED_AS
                        want = REFUSED_AS[function] if refused else DONE[function]
                        if not result.startswith(want) or (
                                want.startswith("error") and REFUSED[name] not in result):
                            problems.append(f"{function} did not finish ({result}, not {want})")
                failed |= bool(problems)
                print(f"{name:<22}{size / 1e6:>9.1f}" + "".join(f"{c:>9}" for c in cells)
                      + "  " + ("; ".join(problems) or "ok") + f" ({', '.join(statuses)})")
                sys.stdout.flush()
    server.shutdown()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
