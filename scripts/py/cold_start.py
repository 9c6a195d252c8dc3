"""Cold start and size of every function as `sam build` built it (run by scripts/cold-start).

Each binary is started RUNS times as Lambda starts it: a fresh process with the template's
environment and AWS_LAMBDA_RUNTIME_API pointing at a minimal Runtime API served here on the
loopback. Measured per start:
  init          process start -> its first GET .../invocation/next (what Lambda reports as
                Init Duration: config read, SDK clients built, secrets fetched);
  first invoke  the first event handed over -> its response posted (first connections included).
AWS is moto on the loopback (MAILROOM_TEST_MOTO_ENDPOINT, or one started here), reached through
the same recording gateway as scripts/py/sam_local.py. Prints a markdown table.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import moto_launcher
import sam_local
from cfnlint.decode import decode

# The event each function's first invoke gets (and the raw mail it reads, if any). Every function of
# the template must have an entry: one without is an error, not a function left unmeasured.
FIRST = {
    "StopFunction": ("lambda/stop-clean.json", None),
    "BounceFunction": ("lambda/bounce-unknown.json", None),
    "StoreFunction": ("lambda/store-event.json", "mail/store-attachments.eml"),
    "FanoutFunction": ("lambda/fanout-event.json", "mail/store-attachments.eml"),
    "ApiFunction": ("lambda/api-event.json", "mail/attachments.eml"),
    # With the forward map of event_cases.FORWARD_MAP it sends two copies through moto's SES v2.
    "ForwardFunction": ("lambda/forward-event.json", "mail/attachments.eml"),
    # A CloudFormation custom resource event needs CloudFormation: its init is measured only.
    "ActivateRuleSetFunction": (None, None),
}
RUNS = int(os.environ.get("COLD_START_RUNS", "11"))


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A measured process is killed while its next poll is open: that reset is expected.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class RuntimeApi(BaseHTTPRequestHandler):
    """Just the three Runtime API calls a cold start and one invoke make."""

    protocol_version = "HTTP/1.1"
    start = 0
    event = None
    first_next = None
    handed = None
    done = None
    answer = None

    def do_GET(self):
        cls = RuntimeApi
        if cls.first_next is None:
            cls.first_next = time.monotonic()
        if cls.event is None or cls.handed is not None:
            # No event (init only), or the one event is spent: hold this poll until the next start.
            start = cls.start
            while cls.start == start:
                time.sleep(0.01)
            return
        cls.handed = time.monotonic()
        body = json.dumps(cls.event).encode()
        self.send_response(200)
        for k, v in (("Lambda-Runtime-Aws-Request-Id", "cold-start-1"),
                     ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60000)),
                     ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:f"),
                     ("Content-Type", "application/json"), ("Content-Length", str(len(body)))):
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if "/invocation/" in self.path:
            RuntimeApi.done = time.monotonic()
            RuntimeApi.answer = (self.path.rsplit("/", 1)[1], body.decode(errors="replace"))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def environment(tpl, logical, params):
    """The template's variables for one function: literals, parameter defaults, else ours."""
    props = tpl["Resources"][logical]["Properties"]
    merged = dict((tpl.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables") or {})
    merged.update((props.get("Environment") or {}).get("Variables") or {})
    out = {}
    for name, value in merged.items():
        if name in params:
            out[name] = params[name]
        elif isinstance(value, str):
            out[name] = value
        elif isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in tpl.get("Parameters", {}):
            out[name] = str(tpl["Parameters"][value["Ref"]].get("Default", ""))
        else:
            raise SystemExit(f"{logical}: no local value for {name}")
    return out


def one_start(binary, env, event):
    # A Runtime API of its own per start: a late poll from the previous process cannot take this
    # start's event.
    RuntimeApi.event, RuntimeApi.first_next, RuntimeApi.handed, RuntimeApi.done = event, None, None, None
    runtime = QuietServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=runtime.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{runtime.server_address[1]}")
    started = time.monotonic()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = started + 60
        while time.monotonic() < deadline:
            if RuntimeApi.first_next is not None and (event is None or RuntimeApi.done is not None):
                break
            if proc.poll() is not None:
                raise SystemExit(f"{binary} exited {proc.returncode}: {proc.stderr.read().decode()[-800:]}")
            time.sleep(0.0005)
        else:
            raise SystemExit(f"{binary}: no poll/answer within 60 s")
    finally:
        proc.kill()
        proc.wait()
        RuntimeApi.start += 1
        runtime.shutdown()
        runtime.server_close()
    init = (RuntimeApi.first_next - started) * 1000
    invoke = (RuntimeApi.done - RuntimeApi.handed) * 1000 if event is not None else None
    if event is not None and RuntimeApi.answer[0] != "response":
        raise SystemExit(f"{binary}: the first invoke failed: {RuntimeApi.answer[1][:500]}")
    return init, invoke


def main():
    binaries = sys.argv[1] if len(sys.argv) > 1 else os.path.join(sam_local.ROOT, ".aws-sam", "local")
    moto, moto_proc = moto_launcher.endpoint_or_start()
    where = urllib.parse.urlsplit(moto)
    sam_local.wait_for(where.hostname, where.port)
    sam_local.Gateway.moto = (where.hostname, where.port)
    (s3, _, _, _), params = sam_local.resources(moto)
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), sam_local.Gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{gateway.server_address[1]}"
    params.update(MAILROOM_AWS_ENDPOINT_URL=endpoint, MAILROOM_WEBHOOK_URL=f"{endpoint}/hook",
                  MAILROOM_BOUNCE_SENDER="mailer-daemon@example.com", RUST_LOG="warn")
    # The template's forward address is an !If on a parameter: the identity resources() verified,
    # and its ARN (a !Sub of pseudo parameters in the template).
    domain = sam_local.event_cases.FORWARD_DOMAIN
    params.update(MAILROOM_FORWARD_FROM=f"forwarder@{domain}", MAILROOM_FORWARD_MAP_PARAMETER="",
                  MAILROOM_FORWARD_IDENTITY_ARN=f"arn:aws:ses:us-east-1:123456789012:identity/{domain}")
    tpl, matches = decode(os.path.join(binaries, "template.yaml"))
    if matches:
        raise SystemExit(f"{binaries}/template.yaml: {matches}")
    functions = [k for k, v in tpl["Resources"].items() if v.get("Type") == "AWS::Serverless::Function"]
    unknown = sorted(set(functions) - set(FIRST)) + sorted(set(FIRST) - set(functions))
    if unknown:
        raise SystemExit(f"{binaries}/template.yaml and FIRST in {__file__} disagree on {', '.join(unknown)}: "
                         "every function of the template needs a first event (or None) there")
    base = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": sam_local.REGION,
            "AWS_DEFAULT_REGION": sam_local.REGION, "AWS_LAMBDA_FUNCTION_NAME": "cold-start",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EC2_METADATA_DISABLED": "true"}
    rows = []
    try:
        for logical in functions:
            event_rel, raw = FIRST[logical]
            binary = os.path.join(binaries, logical, "bootstrap")
            env = dict(base, **environment(tpl, logical, params))
            event = None
            if event_rel:
                event = json.load(open(os.path.join(sam_local.EVENTS, event_rel)))
                if raw:
                    mid = event["Records"][0]["ses"]["mail"]["messageId"]
                    with open(os.path.join(sam_local.EVENTS, raw), "rb") as f:
                        s3.put_object(Bucket=sam_local.RUN, Key=f"raw/{mid}", Body=f.read())
            inits, invokes = [], []
            for _ in range(RUNS):
                if event is not None:
                    # forward's idempotency markers: with them left, every start after the first
                    # would skip the sending it is measured doing.
                    mid = event["Records"][0]["ses"]["mail"]["messageId"]
                    for o in s3.list_objects_v2(Bucket=sam_local.RUN, Prefix=f"forwarded/{mid}/").get("Contents", []):
                        s3.delete_object(Bucket=sam_local.RUN, Key=o["Key"])
                init, first = one_start(binary, env, event)
                inits.append(init)
                if first is not None:
                    invokes.append(first)
            rows.append((logical, os.path.getsize(binary), inits, invokes))
    finally:
        gateway.shutdown()
        if moto_proc:
            moto_proc.terminate()
    print(f"| function | binary | init (median of {RUNS}, max) | first invoke (median) |")
    print("|---|---:|---:|---:|")
    for logical, size, inits, invokes in rows:
        first = f"{statistics.median(invokes):.1f} ms" if invokes else "-"
        print(f"| {logical} | {size / 1e6:.1f} MB | {statistics.median(inits):.1f} ms ({max(inits):.1f}) | {first} |")
    worst = max(statistics.median(r[2]) for r in rows)
    print(f"slowest median init: {worst:.1f} ms (goal <= 20 ms)")


if __name__ == "__main__":
    main()
