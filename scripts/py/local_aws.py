"""The AWS a function binary meets on this machine, with the environment template.yaml gives it:
S3, SNS, SQS, SSM and SES on moto, and a recorder on the loopback for what moto lacks (SES
SendBounce) and for the webhook endpoint. Used by invoke_events.py (the sample events) and
function_rss.py (memory of the Lambda binaries).
"""

import base64
import json
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

import moto_launcher
from cfn_template import Resolver, Template
from event_cases import FORWARD_DOMAIN, FORWARD_MAP, kms_key, put_raw

REGION, ACCOUNT = "us-east-1", "123456789012"


class Recorder(BaseHTTPRequestHandler):
    """The webhook endpoint (POST /hook...), SES's query API for SendBounce (POST /ses) and, when a
    Stack asks for it, SES v2's SendEmail (POST /sesv2/v2/email/outbound-emails: the size of each
    request body is kept)."""
    webhooks, bounces, sent_sizes = [], [], []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.startswith("/sesv2/v2/email/outbound-emails"):
            Recorder.sent_sizes.append(len(body))
            answer = json.dumps({"MessageId": f"sent-{len(Recorder.sent_sizes)}"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
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


class Stack:
    """The resources of one run (named `run`) on moto at `moto`, the recorder, and each function's
    environment as the template resolves it with them. With `record_sends`, SES v2 is the
    recorder, not moto. `close()` stops the recorder."""

    def __init__(self, root, moto, run, record_sends=False):
        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": REGION})
        aws = lambda svc: boto3.client(svc, endpoint_url=moto, region_name=REGION)
        self.s3, self.sns, self.sqs, self.ssm = aws("s3"), aws("sns"), aws("sqs"), aws("ssm")
        self.kms = aws("kms")
        self.kms_key = kms_key(self.kms)

        self.bucket = run
        self.s3.create_bucket(Bucket=self.bucket)
        topic = self.sns.create_topic(Name=f"{run}-mail")["TopicArn"]
        self.tap = self.sqs.create_queue(QueueName=f"{run}-tap")["QueueUrl"]
        tap_arn = self.sqs.get_queue_attributes(QueueUrl=self.tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=tap_arn)
        self.queues = {}
        for logical in ("WebhookRetryQueue", "WebhookDeadLetterQueue", "InvocationDeadLetterQueue"):
            url = self.sqs.create_queue(QueueName=f"{run}-{logical}")["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.queues[logical] = {"ref": url, "Arn": arn, "QueueName": url.rsplit("/", 1)[1]}
        secret = "whsec_" + base64.b64encode(b"mailroom template check secret!!").decode()
        param = self.ssm.put_parameter(Name=f"/{run}/webhook-secret", Value=secret, Type="SecureString")
        assert param["Version"] == 1
        secret_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{run}/webhook-secret"
        ses = aws("ses")
        ses.verify_domain_identity(Domain=FORWARD_DOMAIN)
        config_set = f"{run}-forward"
        ses.create_configuration_set(ConfigurationSet={"Name": config_set})

        self.rec_port = moto_launcher.free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.rec_port), Recorder)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

        self.template = Template(os.path.join(root, "template.yaml"))
        physical = {"RawMailBucket": {"ref": self.bucket, "Arn": f"arn:aws:s3:::{self.bucket}"},
                    "MailTopic": {"ref": topic, "TopicName": topic.rsplit(":", 1)[1]},
                    "ForwardConfigurationSet": {"ref": config_set}, **self.queues}
        self.resolver = Resolver(self.template, {
            "WebhookUrl": f"http://127.0.0.1:{self.rec_port}/hook",
            "WebhookSecretArn": secret_arn,
            "Mailboxes": "support@example.com,@team.example.com,sales@example.com,@inbox.example.com",
            "ForwardMap": FORWARD_MAP,
            "KmsKeyArn": self.kms_key,
        }, physical, {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                      "AWS::StackName": run})
        # Binary name -> logical id.
        self.binaries = {self.template.function_binary(fn): fn
                         for fn in self.template.of_type("AWS::Serverless::Function")}
        self.base_env = {"AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_SES": f"http://127.0.0.1:{self.rec_port}/ses",
                         "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                         "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}
        if record_sends:
            self.base_env["AWS_ENDPOINT_URL_SESV2"] = f"http://127.0.0.1:{self.rec_port}/sesv2"

    def env(self, binary):
        """Everything the function running `binary` finds in its environment on Lambda, but the
        runtime's own variables."""
        env = dict(self.base_env)
        env.update(self.resolver.env(self.binaries[binary]))
        return env

    def put_raw(self, mid, eml_path, want):
        put_raw(self.s3, self.kms, self.bucket, mid, eml_path, want, self.kms_key)

    def close(self):
        self.server.shutdown()
