"""Every Lambda/SQS sample event in events/ through its real function binary under
`cargo lambda watch` (the Lambda runtime API emulator, no Docker), with the environment
template.yaml gives that function: S3/SNS/SQS/SSM on moto, SES SendBounce and the webhook
endpoint on a local recorder. Asserts each answer and its side effects.

    invoke_events.py ROOT FUNCTION...      the binaries must be built (scripts/test.d/template)
"""

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

import moto_launcher
from event_cases import CASES, FORWARD_DOMAIN, FORWARD_MAP, check
from cfn_template import Resolver, Template

ROOT, FUNCTIONS = sys.argv[1], sys.argv[2:]
EVENTS = os.path.join(ROOT, "events")
REGION, ACCOUNT = "us-east-1", "123456789012"
RUN = f"tplcheck-{os.getpid()}"



class Recorder(BaseHTTPRequestHandler):
    """The webhook endpoint (POST /hook) and SES's query API for SendBounce (POST /ses)."""
    webhooks, bounces = [], []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.startswith("/hook"):
            Recorder.webhooks.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")
            return
        form = urllib.parse.parse_qs(body.decode())
        if form.get("Action") == ["SendBounce"]:
            Recorder.bounces.append(form)
            xml = ('<SendBounceResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><SendBounceResult>'
                   f'<MessageId>bounce-{len(Recorder.bounces)}</MessageId></SendBounceResult><ResponseMetadata>'
                   '<RequestId>4d1b3c2a-0000-0000-0000-000000000000</RequestId></ResponseMetadata></SendBounceResponse>')
            self.send_response(200)
            self.send_header("content-type", "text/xml")
            self.end_headers()
            self.wfile.write(xml.encode())
            return
        self.send_response(400)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    moto, moto_proc = moto_launcher.endpoint_or_start()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION})
    aws = lambda svc: boto3.client(svc, endpoint_url=moto, region_name=REGION)
    s3, sns, sqs, ssm = aws("s3"), aws("sns"), aws("sqs"), aws("ssm")

    bucket = RUN
    s3.create_bucket(Bucket=bucket)
    topic = sns.create_topic(Name=f"{RUN}-mail")["TopicArn"]
    tap = sqs.create_queue(QueueName=f"{RUN}-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=tap_arn)
    queues = {}
    for logical in ("WebhookRetryQueue", "WebhookDeadLetterQueue", "InvocationDeadLetterQueue"):
        url = sqs.create_queue(QueueName=f"{RUN}-{logical}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queues[logical] = {"ref": url, "Arn": arn, "QueueName": url.rsplit("/", 1)[1]}
    secret = "whsec_" + base64.b64encode(b"mailroom template check secret!!").decode()
    param = ssm.put_parameter(Name=f"/{RUN}/webhook-secret", Value=secret, Type="SecureString")
    secret_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{RUN}/webhook-secret"
    assert param["Version"] == 1
    ses = aws("ses")
    ses.verify_domain_identity(Domain=FORWARD_DOMAIN)
    config_set = f"{RUN}-forward"
    ses.create_configuration_set(ConfigurationSet={"Name": config_set})

    rec_port = moto_launcher.free_port()
    server = ThreadingHTTPServer(("127.0.0.1", rec_port), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    template = Template(os.path.join(ROOT, "template.yaml"))
    physical = {"RawMailBucket": {"ref": bucket, "Arn": f"arn:aws:s3:::{bucket}"},
                "MailTopic": {"ref": topic, "TopicName": topic.rsplit(":", 1)[1]},
                "ForwardConfigurationSet": {"ref": config_set}, **queues}
    resolver = Resolver(template, {
        "WebhookUrl": f"http://127.0.0.1:{rec_port}/hook",
        "WebhookSecretArn": secret_arn,
        "Mailboxes": "support@example.com,@team.example.com,sales@example.com,@inbox.example.com",
        "ForwardMap": FORWARD_MAP,
    }, physical, {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                  "AWS::StackName": RUN})
    binaries = {template.function_binary(fn): fn for fn in template.of_type("AWS::Serverless::Function")}
    base_env = {"AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_SES": f"http://127.0.0.1:{rec_port}/ses",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION}
    cases = [c for c in CASES if c[0] in FUNCTIONS]
    for f in FUNCTIONS:
        if f not in binaries:
            raise SystemExit(f"template.yaml has no function with Binary {f!r}")

    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    watch = {"proc": None, "fn": None, "port": None, "envfile": None}

    def stop_watcher():
        proc = watch["proc"]
        if proc is not None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
            os.unlink(watch["envfile"])
        watch.update(proc=None, fn=None)

    def start_watcher(fn):
        # One watcher per function, holding only the environment the template gives that
        # function: a variable another function happens to have cannot mask a missing one.
        stop_watcher()
        env = dict(base_env)
        env.update(resolver.env(binaries[fn]))
        env["RUST_LOG"] = "warn"
        envfile = tempfile.NamedTemporaryFile("w", suffix=".env", delete=False)
        # Quoted: values such as the forward map hold '=', ';' and blanks.
        quote = lambda v: '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        envfile.write("".join(f"{k}={quote(v)}\n" for k, v in env.items()))
        envfile.close()
        port = moto_launcher.free_port()
        log.write(f"=== {fn}\n")
        log.flush()
        proc = subprocess.Popen(["cargo-lambda", "lambda", "watch", "--ignore-rust-version", "--ignore-changes", "--quiet",
                                 "--invoke-address", "127.0.0.1", "--invoke-port", str(port),
                                 "--env-file", envfile.name],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=shim_env)
        watch.update(proc=proc, fn=fn, port=port, envfile=envfile.name)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return port
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("cargo lambda watch exited: " + open(log.name).read()[-2000:])
                time.sleep(0.1)
        raise SystemExit("cargo lambda watch did not listen within 30 s")

    # cargo lambda does not pass --ignore-rust-version on to the `cargo run` it starts, which is
    # $CARGO: the shim adds it (scripts/cargo-shim/cargo). Hence cargo-lambda itself, not
    # `cargo lambda`, which would set $CARGO to cargo.
    shim_env = dict(os.environ, CARGO=os.path.join(ROOT, "scripts", "cargo-shim", "cargo"))
    failures = []
    try:
        for fn, rel, want in cases:
            port = watch["port"] if watch["fn"] == fn else start_watcher(fn)
            data = json.load(open(os.path.join(EVENTS, rel)))
            if rel.startswith("sqs/"):
                # The retry job names the bucket of the stack that queued it: point it at ours.
                for r in data["Records"]:
                    job = json.loads(r["body"])
                    job["bucket"] = bucket
                    r["body"] = json.dumps(job)
                mid = json.loads(data["Records"][0]["body"])["messageId"]
            else:
                mid = data["Records"][0]["ses"]["mail"]["messageId"]
            if "raw" in want:
                s3.put_object(Bucket=bucket, Key=f"raw/{mid}", Body=open(os.path.join(EVENTS, want["raw"]), "rb").read())
            Recorder.webhooks.clear()
            Recorder.bounces.clear()
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as ev:
                json.dump(data, ev)
            started = time.monotonic()
            p = subprocess.run(["cargo", "lambda", "invoke", fn, "--data-file", ev.name, "--invoke-address", "127.0.0.1",
                                "--invoke-port", str(port), "--output-format", "json"],
                               cwd=ROOT, capture_output=True, text=True, timeout=180)
            took = time.monotonic() - started
            problems = []
            out = None
            if p.returncode != 0:
                problems.append(f"invoke failed: {(p.stdout + p.stderr).strip()[-600:]}")
            else:
                try:
                    out = json.loads(p.stdout)
                except ValueError:
                    problems.append(f"output is not JSON: {p.stdout[:300]!r}")
            problems += check(want, out, mid, s3=s3, sqs=sqs, tap=tap, bucket=bucket,
                              webhooks=Recorder.webhooks, bounces=Recorder.bounces)
            status = "FAIL" if problems else "ok  "
            shown = json.dumps(out)[:70] if out is not None else "-"
            print(f"{status} {fn:<7} {rel:<38} {took:5.1f}s  {shown}")
            for pr in problems:
                print(f"       {pr}")
            if problems:
                failures.append(rel)
    finally:
        stop_watcher()
        server.shutdown()
        if moto_proc:
            moto_proc.terminate()
    if failures:
        print("--- cargo lambda watch log (tail)")
        print(open(log.name).read()[-4000:])
        raise SystemExit(f"{len(failures)} of {len(cases)} sample events failed: {', '.join(failures)}")
    os.unlink(log.name)
    print(f"{len(cases)} sample events ran through {len(set(c[0] for c in cases))} function binaries")


if __name__ == "__main__":
    main()
