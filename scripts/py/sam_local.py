"""Every sample event through its function as `sam build` built it, with `sam local invoke`.

    sam_local.py          check every sample event, then run the README's `sam local invoke`
                          table exactly as written (what scripts/test.d/sam does)
    sam_local.py serve    local AWS for those README commands: start it, leave it running, and run
                          them in another shell (scripts/sam-local-aws)

Needs scripts/setup-sam-local (docker, the base image, an x86_64 `sam build` into .aws-sam/local,
which samconfig.toml's local_invoke section points at). AWS is moto on the loopback; the
containers reach it through one small server bound to the docker bridge's gateway only, which also
records the webhook POSTs and answers SES SendBounce (moto does not implement it) and forwards
everything else to moto. The functions get its address in MAILROOM_AWS_ENDPOINT_URL through
`--env-vars`, with the names of the resources made here.

The check prints one line per event with the invoke time, the function's answer and the emulator's
`Init Duration`, then a per-function summary. Exits non-zero when any answer or side effect is wrong.
"""

import base64
import http.client
import json
import os
import shlex
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

import event_cases
import moto_launcher

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVENTS = os.path.join(ROOT, "events")
REGION = "us-east-1"
RUN = f"samlocal-{os.getpid()}"

# The env-vars file the README's commands name; `serve` writes it, the check writes it for its run.
ENV_FILE = os.path.join(".aws-sam", "local-env.json")
# The bucket the sample SQS retry job names (it was queued by a stack whose bucket has this name).
SAMPLE_BUCKET = "mailroom-inbound"


def logical_id(binary):
    """template.yaml's logical id for a function binary: `activate-ruleset` -> ActivateRulesetFunction."""
    return "".join(part.capitalize() for part in binary.split("-")) + "Function"


# The cases and their check are shared with the cargo lambda run (scripts/py/event_cases.py), which
# names functions by binary; sam names them by logical id.
CASES = [(logical_id(binary), rel, want) for binary, rel, want in event_cases.CASES]
MAILBOXES = "support@example.com,@team.example.com,sales@example.com,@inbox.example.com"
INIT = re.compile(r"Init Duration:\s*([0-9.]+)\s*ms")


class Gateway(BaseHTTPRequestHandler):
    """Webhook endpoint (/hook), SES SendBounce, and a pass-through to moto for the rest."""

    moto = None  # (host, port)
    webhooks, bounces = [], []
    protocol_version = "HTTP/1.1"

    def body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        body = self.body()
        if self.command == "POST" and self.path.startswith("/hook"):
            Gateway.webhooks.append((dict(self.headers), body))
            return self.reply(200, b"ok")
        if self.command == "POST" and b"Action=SendBounce" in body:
            form = urllib.parse.parse_qs(body.decode())
            Gateway.bounces.append(form)
            xml = ('<SendBounceResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><SendBounceResult>'
                   f'<MessageId>bounce-{len(Gateway.bounces)}</MessageId></SendBounceResult><ResponseMetadata>'
                   '<RequestId>4d1b3c2a-0000-0000-0000-000000000000</RequestId></ResponseMetadata></SendBounceResponse>')
            return self.reply(200, xml.encode(), [("content-type", "text/xml")])
        conn = http.client.HTTPConnection(*Gateway.moto, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        headers["content-length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        skip = ("transfer-encoding", "connection", "content-length")
        self.reply(resp.status, data, [(k, v) for k, v in resp.getheaders() if k.lower() not in skip])

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    def log_message(self, *args):
        pass


def bridge_gateway():
    """The host's address on the default docker bridge (docker0), which the containers use."""
    out = subprocess.run(["docker", "network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if not out:
        # dockerd does not always record the gateway it gave the bridge; the interface has it.
        ip = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "docker0"], capture_output=True, text=True)
        found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", ip.stdout)
        out = found.group(1) if found else ""
    if not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", out):
        raise SystemExit(f"no docker bridge gateway address ({out!r}): is dockerd running?")
    return out


def wait_for(host, port):
    for _ in range(150):
        try:
            socket.create_connection((host, port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {host}:{port}")


def resources(moto, bucket=RUN):
    """The stack's bucket, topic (with an SQS tap to see what was published), queues, secret."""
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    aws = lambda svc: boto3.client(svc, endpoint_url=moto, region_name=REGION)
    s3, sns, sqs, ssm, kms = aws("s3"), aws("sns"), aws("sqs"), aws("ssm"), aws("kms")
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    topic = sns.create_topic(Name=f"{RUN}-mail")["TopicArn"]
    tap = sqs.create_queue(QueueName=f"{RUN}-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=tap_arn)
    retry = sqs.create_queue(QueueName=f"{RUN}-retry")["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"{RUN}-dlq")["QueueUrl"]
    secret = "whsec_" + base64.b64encode(b"mailroom sam local check secret!").decode()
    ssm.put_parameter(Name=f"/{RUN}/webhook-secret", Value=secret, Type="SecureString")
    # The forward function sends as forwarder@<DomainName>, through a configuration set: moto, like
    # SES, sends only from a verified identity and through a set that exists.
    ses = aws("ses")
    ses.verify_domain_identity(Domain=event_cases.FORWARD_DOMAIN)
    config_set = f"{RUN}-forward"
    if config_set not in [c["Name"] for c in ses.list_configuration_sets().get("ConfigurationSets", [])]:
        ses.create_configuration_set(ConfigurationSet={"Name": config_set})
    params = {
        "MAILROOM_RAW_BUCKET": bucket,
        "MAILROOM_STORE_BUCKET": bucket,
        "MAILROOM_TOPIC_ARN": topic,
        "MAILROOM_RETRY_QUEUE_URL": retry,
        "MAILROOM_DLQ_URL": dlq,
        "MAILROOM_WEBHOOK_SECRET_ARN": f"arn:aws:ssm:{REGION}:123456789012:parameter/{RUN}/webhook-secret",
        "MAILROOM_WEBHOOK_SECRET": "",
        "MAILROOM_MAILBOXES": MAILBOXES,
        "MAILROOM_FORWARD_MAP": event_cases.FORWARD_MAP,
        "MAILROOM_FORWARD_CONFIGURATION_SET": config_set,
        "MAILROOM_KMS_KEY_ARN": event_cases.kms_key(kms),
    }
    return (s3, sqs, tap, kms), params


def invoke(logical, event, env_file):
    """`sam local invoke` as the README runs it (samconfig.toml supplies the rest)."""
    env = dict(os.environ, SAM_CLI_TELEMETRY="0", AWS_MAX_ATTEMPTS="1", AWS_EC2_METADATA_DISABLED="true",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
               AWS_REGION=REGION)
    started = time.monotonic()
    p = subprocess.run(["sam", "local", "invoke", logical, "-e", event, "--env-vars", env_file],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    out, problems = None, []
    if p.returncode != 0:
        problems.append(f"sam local invoke exited {p.returncode}: {p.stderr.strip()[-800:]}")
    elif not lines:
        problems.append(f"no answer on stdout; stderr: {p.stderr.strip()[-800:]}")
    else:
        try:
            out = json.loads(lines[-1])
        except ValueError:
            problems.append(f"answer is not JSON: {lines[-1][:300]!r}")
        if isinstance(out, dict) and "errorType" in out:
            problems.append(f"function error: {out}")
    init = INIT.search(p.stderr)
    return out, problems, took, float(init.group(1)) if init else None, p.stderr


class LocalAws:
    """moto, the gateway on the docker bridge, one stack's resources in `bucket`, and the env-vars
    file that hands their names and the gateway's address to `sam local invoke`."""

    def __init__(self, bucket, env_file, own_moto=False):
        if own_moto:
            os.environ.pop("MAILROOM_TEST_MOTO_ENDPOINT", None)
        self.moto, self.moto_proc = moto_launcher.endpoint_or_start()
        where = urllib.parse.urlsplit(self.moto)
        wait_for(where.hostname, where.port)
        Gateway.moto = (where.hostname, where.port)
        self.bucket = bucket
        (self.s3, self.sqs, self.tap, self.kms), params = resources(self.moto, bucket)
        self.kms_key = params["MAILROOM_KMS_KEY_ARN"]

        # Bound to the bridge gateway only: reachable from the containers and this machine, no further.
        gw = bridge_gateway()
        self.server = ThreadingHTTPServer((gw, 0), Gateway)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://{gw}:{self.server.server_address[1]}"
        params.update(MAILROOM_AWS_ENDPOINT_URL=self.endpoint, MAILROOM_WEBHOOK_URL=f"{self.endpoint}/hook")
        self.env_file = env_file
        os.makedirs(os.path.dirname(os.path.abspath(env_file)), exist_ok=True)
        with open(env_file, "w") as f:
            json.dump({"Parameters": params}, f, indent=2)

    def put_raw(self, mid, eml_rel, want):
        event_cases.put_raw(self.s3, self.kms, self.bucket, mid, os.path.join(EVENTS, eml_rel), want,
                            self.kms_key)

    def close(self):
        self.server.shutdown()
        if self.moto_proc:
            self.moto_proc.terminate()


def message_id(data, rel):
    if rel.startswith("sqs/"):
        return json.loads(data["Records"][0]["body"])["messageId"]
    return data["Records"][0]["ses"]["mail"]["messageId"]


def run_cases(aws, work):
    """Every sample event, checked; returns the failed ones."""
    failures, inits, times = [], {}, {}
    for logical, rel, want in CASES:
        data = json.load(open(os.path.join(EVENTS, rel)))
        if rel.startswith("sqs/"):
            # The retry job names the bucket of the stack that queued it: point it at ours.
            for r in data["Records"]:
                job = json.loads(r["body"])
                job["bucket"] = aws.bucket
                r["body"] = json.dumps(job)
        mid = message_id(data, rel)
        if "raw" in want:
            aws.put_raw(mid, want["raw"], want)
        Gateway.webhooks.clear()
        Gateway.bounces.clear()
        event = os.path.join(work, os.path.basename(rel))
        with open(event, "w") as f:
            json.dump(data, f)
        out, problems, took, init, stderr = invoke(logical, event, aws.env_file)
        problems += event_cases.check(want, out, mid, s3=aws.s3, sqs=aws.sqs, tap=aws.tap, bucket=aws.bucket,
                                      webhooks=Gateway.webhooks, bounces=Gateway.bounces)
        if init is not None:
            inits.setdefault(logical, []).append(init)
        times.setdefault(logical, []).append(took)
        shown = json.dumps(out)[:60] if out is not None else "-"
        init_s = f"init {init:6.1f} ms" if init is not None else "init      - "
        print(f"{'FAIL' if problems else 'ok  '} {logical:<15} {rel:<38} {took:5.1f}s  {init_s}  {shown}",
              flush=True)
        for pr in problems:
            print(f"       {pr}")
        if problems:
            failures.append(rel)
            print("       --- sam stderr (tail)\n" + "\n".join("       " + s for s in stderr.splitlines()[-15:]))
    # The emulator (RIE) reports an Init Duration, but from when the runtime is already up: it is
    # printed as given, and scripts/cold-start measures the real process start to first poll.
    print("\nfunction         invokes  sam local invoke (median)  RIE Init Duration (median)")
    for logical in dict.fromkeys(c[0] for c in CASES):
        i = inits.get(logical)
        print(f"{logical:<16} {len(times[logical]):>7}  {statistics.median(times[logical]):>23.1f} s"
              f"  {(f'{statistics.median(i):.1f} ms') if i else 'not reported':>32}")
    return failures


def readme_commands():
    """(command, answer column) of each row of the README's `sam local invoke` table."""
    text = open(os.path.join(ROOT, "README.md")).read()
    rows = re.findall(r"^\|[^|\n]*\|\s*`(sam local invoke [^`]+)`\s*\|([^\n]*)\|\s*$", text, re.M)
    if not rows:
        raise SystemExit("README.md has no `sam local invoke` table rows")
    return rows


def seed_samples(aws):
    """Every sample event's raw mail in the bucket, under the messageId the event names."""
    for _, rel, want in CASES:
        if "raw" in want:
            aws.put_raw(message_id(json.load(open(os.path.join(EVENTS, rel))), rel), want["raw"], want)


def run_readme(aws):
    """The README's table, each command exactly as written (from the repository root), with the
    env-vars file it names written by LocalAws. Returns the rows that failed."""
    failures = []
    for command, answer in readme_commands():
        argv = shlex.split(command)
        env = dict(os.environ, SAM_CLI_TELEMETRY="0", AWS_MAX_ATTEMPTS="1", AWS_EC2_METADATA_DISABLED="true",
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
                   AWS_REGION=REGION)
        Gateway.webhooks.clear()
        Gateway.bounces.clear()
        p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        lines = [line for line in p.stdout.splitlines() if line.strip()]
        problems, answered = [], bool(lines)
        try:
            out = json.loads(lines[-1]) if lines else None
        except ValueError:
            out, answered = None, False
        if p.returncode != 0 or not answered:
            problems.append(f"exit {p.returncode}, answer {lines[-1][:200] if lines else None!r}: "
                            f"{p.stderr.strip()[-600:]}")
        elif isinstance(out, dict) and "errorType" in out:
            problems.append(f"function error: {out}")
        want = re.search(r"`(\{[^`]*\})`", answer)
        if want and not problems and out != json.loads(want.group(1)):
            problems.append(f"answer {out}, README says {want.group(1)}")
        if "SendBounce" in answer and not Gateway.bounces:
            problems.append("README says it calls SendBounce; no SendBounce arrived")
        if "POSTs the webhook" in answer and not Gateway.webhooks:
            problems.append("README says it POSTs the webhook; none arrived")
        if "SendEmail" in answer:
            sent = [d for o in (out or {}).get("outcomes", []) for d in o.get("deliveries", [])
                    if d.get("status") in ("sent", "already_sent")]
            if not sent:
                problems.append(f"README says it sends through SES v2; the answer lists no send: {out}")
        print(f"{'FAIL' if problems else 'ok  '} {command}", flush=True)
        for pr in problems:
            print(f"       {pr}")
        if problems:
            failures.append(command)
    return failures


def check():
    work = tempfile.mkdtemp(prefix="mailroom-sam-local-")
    aws = LocalAws(RUN, os.path.join(work, "env.json"))
    try:
        failures = run_cases(aws, work)
    finally:
        aws.close()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise SystemExit(f"{len(failures)} of {len(CASES)} sample events failed under sam local invoke: "
                         + ", ".join(failures))
    print(f"{len(CASES)} sample events ran through {len(set(c[0] for c in CASES))} functions with sam local invoke")

    # The README's commands as a reader runs them, after `scripts/sam-local-aws` (here: the same
    # LocalAws, on a moto of its own so the sample bucket's fixed name cannot meet another run's).
    print(f"\nthe README's sam local invoke table, as written (env-vars file {ENV_FILE})")
    aws = LocalAws(SAMPLE_BUCKET, os.path.join(ROOT, ENV_FILE), own_moto=True)
    try:
        seed_samples(aws)
        failures = run_readme(aws)
    finally:
        aws.close()
    if failures:
        raise SystemExit(f"{len(failures)} README sam local invoke commands failed")
    print(f"{len(readme_commands())} README commands ran as written")


def serve():
    aws = LocalAws(SAMPLE_BUCKET, os.path.join(ROOT, ENV_FILE), own_moto=True)
    seed_samples(aws)
    print(f"local AWS for sam local invoke: moto at {aws.moto}, reached from the containers at {aws.endpoint}")
    print(f"bucket {SAMPLE_BUCKET} holds every sample event's raw mail; names and endpoint are in {ENV_FILE}")
    print("run the README's sam local invoke commands in another shell; Ctrl-C stops this", flush=True)
    seen_hooks = seen_bounces = 0
    try:
        while True:
            time.sleep(0.5)
            for headers, body in Gateway.webhooks[seen_hooks:]:
                hid = {k.lower(): v for k, v in headers.items()}.get("webhook-id")
                print(f"webhook POST webhook-id={hid} ({len(body)} bytes)", flush=True)
            for form in Gateway.bounces[seen_bounces:]:
                who = [v[0] for k, v in form.items() if k.endswith(".Recipient")]
                print(f"SES SendBounce for {', '.join(who)}", flush=True)
            seen_hooks, seen_bounces = len(Gateway.webhooks), len(Gateway.bounces)
    except KeyboardInterrupt:
        pass
    finally:
        aws.close()


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    if mode == "serve":
        serve()
    elif mode == "check":
        check()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
