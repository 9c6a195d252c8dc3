"""Receipt-rule invariants of a SAM template that cfn-lint does not know about (docs/ses.md).

    check_template.py [template.yaml]       check one template (default: the repository's)
    check_template.py --negative [DIR]      every DIR/*.yaml must be rejected with exactly the
                                            errors its "# expect:" lines name

Run by scripts/check-template with the project's .venv Python.
"""

import ipaddress
import json
import os
import re
import subprocess
import sys

from cfn_template import Template, ref_target, sub_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# docs/ses.md §4.3, §5.2, §5.4, §7.1.
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,50}$")
RULE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")
RULE_SET_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$")
MAX_ACTIONS = 10
MAX_RECIPIENTS = 100
MAX_HEADER_VALUE = 2048
ACTION_KEYS = {
    "S3Action", "LambdaAction", "SNSAction", "BounceAction", "StopAction",
    "AddHeaderAction", "WorkmailAction", "ConnectAction",
}
# Only the gate functions decide mail flow; everything else runs as Event (docs/ses.md §2).
REQUEST_RESPONSE_BINARIES = {"stop", "bounce"}
# The variable a function reads the raw message location from: such a function needs content.
RAW_BUCKET_VAR = "MAILROOM_RAW_BUCKET"
RAW_PREFIX_VAR = "MAILROOM_RAW_PREFIX"
# The key a function decrypts raw mail with when the S3 action encrypts it.
KMS_KEY_VAR = "MAILROOM_KMS_KEY_ARN"
SES = "ses.amazonaws.com"
# What one job of an SQS batch may take at worst, per binary: the variable bounding it, its unit
# in seconds, and where the crate's default for it is written (used when the template leaves the
# variable unset).
PER_JOB_WORST_CASE = {
    "api": ("MAILROOM_WEBHOOK_TIMEOUT_MS", 0.001,
            "functions/api/src/config.rs", r"parsed_or\(env, TIMEOUT_VAR, ([0-9_]+)\)"),
}
# What a job may spend on AWS calls besides the per-job bound above (the crate's own constant).
PER_JOB_AWS_BUDGET = {
    "api": ("functions/api/src/lib.rs", r"JOB_AWS_BUDGET: Duration = Duration::from_secs\(([0-9]+)\)"),
}
# Beyond the per-job bound: reading the raw mail, uploading attachments, enqueueing the next
# attempt, a cold start.
BATCH_MARGIN_S = 10
# Lambda's SQS poller: the queue's visibility timeout at least six times the function timeout.
VISIBILITY_FACTOR = 6
# CloudFormation and SAM defaults.
DEFAULT_TIMEOUT_S = 3
DEFAULT_VISIBILITY_S = 30
DEFAULT_RETENTION_S = 345600
DEFAULT_BATCH = 10
# What SAM attaches to a function with a `Type: SQS` event: sqs:ReceiveMessage, DeleteMessage and
# GetQueueAttributes on every queue of the account.
SQS_MANAGED_POLICY = "AWSLambdaSQSQueueExecutionRole"
IAM_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


_ENV_VARS = None


# The records SES needs, as the template writes them: the receiving MX and the MAIL FROM MX
# name the stack's own Region (SES receives, and takes bounces for a MAIL FROM domain, only in
# the Region of the identity), and the MAIL FROM domain's SPF lets amazonses.com send
# (docs/ses.md §7.2, §7.4).
INBOUND_MX = "10 inbound-smtp.${AWS::Region}.amazonaws.com"
MAIL_FROM_MX = "10 feedback-smtp.${AWS::Region}.amazonses.com"
MAIL_FROM_SPF = '"v=spf1 include:amazonses.com ~all"'
DKIM_KEY_LENGTH = "RSA_2048_BIT"
# A receipt filter's policies, and a filter name as SES takes it (docs/ses.md §5.5).
FILTER_POLICIES = {"Block", "Allow"}
FILTER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$")
# "{0,N}" in a list parameter's AllowedPattern: at most N + 1 comma-separated entries.
LIST_BOUND = re.compile(r"\{0,(\d+)\}")

# The events of forwarded mail that mean it did not arrive, or not yet (SES event publishing).
FORWARD_EVENTS = {"bounce", "complaint", "reject", "deliveryDelay"}


def when_set(value):
    """What a value is when its condition holds: the true branch of an `!If`, else itself."""
    while isinstance(value, dict) and "Fn::If" in value:
        value = value["Fn::If"][1]
    return value


def function_statements(policies):
    """The inline statements of a SAM function's Policies, conditional ones as when set."""
    for policy in policies or []:
        if isinstance(policy, dict):
            for st in policy.get("Statement") or []:
                st = when_set(st)
                if isinstance(st, dict):
                    yield st


def env_vars():
    """{binary: [MAILROOM_* variables its crate reads]}, from the function crates themselves
    (`mailroom template env-vars`, built once per run; MAILROOM_ENV_VARS_JSON names a saved copy)."""
    global _ENV_VARS
    if _ENV_VARS is None:
        saved = os.environ.get("MAILROOM_ENV_VARS_JSON")
        if saved:
            with open(saved, encoding="utf-8") as f:
                _ENV_VARS = json.load(f)
        else:
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            dev = subprocess.run([os.path.join(root, "scripts", "dev-build")], cwd=root, check=True,
                                 stdout=subprocess.PIPE, text=True).stdout.strip()
            out = subprocess.run([os.path.join(dev, "mailroom"), "template", "env-vars"],
                                 cwd=root, check=True, stdout=subprocess.PIPE, text=True)
            _ENV_VARS = json.loads(out.stdout)
    return _ENV_VARS


class Checker:
    def __init__(self, path):
        self.path = path
        self.t = Template(path)
        self.base = self.t.base
        self.res = self.t.resources
        self.params = self.t.parameters
        self.errors = []
        self.counts = {"rules": 0, "actions": 0, "functions": 0, "records": 0, "filters": 0}

    def err(self, where, msg):
        self.errors.append(f"{self.path}: {where}: {msg}")

    # ---------------------------------------------------------------- helpers
    def param_default(self, value):
        """A literal, or the Default of a parameter it !Refs; None if neither."""
        if isinstance(value, dict) and set(value) == {"Ref"}:
            p = self.params.get(value["Ref"])
            return None if p is None else p.get("Default")
        return value

    def depends_on(self, logical):
        d = self.res[logical].get("DependsOn") or []
        return {d} if isinstance(d, str) else set(d)

    # ---------------------------------------------------------------- checks
    def run(self):
        sets = self.t.of_type("AWS::SES::ReceiptRuleSet")
        for name, r in sets.items():
            rs = self.param_default((r.get("Properties") or {}).get("RuleSetName"))
            if rs is not None and not RULE_SET_NAME.match(str(rs)):
                self.err(name, f"rule set name {rs!r} is invalid (letters, digits, _ and -, "
                               "start and end alphanumeric, at most 64)")
        rules = self.t.of_type("AWS::SES::ReceiptRule")
        if not rules:
            self.err("Resources", "no AWS::SES::ReceiptRule")
        for name in rules:
            self.rule(name, sets)
        for fn in self.t.of_type("AWS::Serverless::Function"):
            self.function(fn)
            self.on_failure(fn)
        for fn, where, props in self.sqs_triggers():
            self.sqs_consumer(fn, where, props)
        self.sqs_scope()
        self.forward_events()
        self.identities()
        self.dns_records()
        self.receipt_filters()
        return self.errors

    def rule(self, name, sets):
        self.counts["rules"] += 1
        props = self.res[name].get("Properties") or {}
        rule = props.get("Rule") or {}
        if ref_target(props.get("RuleSetName")) not in sets:
            self.err(name, "RuleSetName must !Ref an AWS::SES::ReceiptRuleSet of this template "
                           "(so the set exists before the rule)")
        rname = rule.get("Name")
        if not isinstance(rname, str):
            self.err(name, "Rule.Name must be a literal: permissions and policies build the rule ARN from it")
            rname = None
        elif not RULE_NAME.match(rname):
            self.err(name, f"rule name {rname!r} is invalid (letters, digits, _ . -, start and end "
                           "alphanumeric, at most 64)")
        if rule.get("Enabled") not in (True, "true", "True"):
            self.err(name, "Rule.Enabled must be true (it defaults to false: the rule would silently do nothing)")
        if rule.get("ScanEnabled") not in (True, "true", "True"):
            self.err(name, "Rule.ScanEnabled must be true (without it spam/virus verdicts are missing)")
        tls = rule.get("TlsPolicy", "Optional")
        allowed = ({tls} if isinstance(tls, str)
                   else set((self.params.get(ref_target(tls)) or {}).get("AllowedValues") or ["?"]))
        if not allowed <= {"Optional", "Require"}:
            self.err(name, f"TlsPolicy must be Optional or Require (got {sorted(allowed)})")
        recipients = self.param_default(rule.get("Recipients", []))
        if isinstance(recipients, str):
            recipients = [r for r in recipients.split(",") if r.strip()]
        if isinstance(recipients, list):
            if len(recipients) > MAX_RECIPIENTS:
                self.err(name, f"{len(recipients)} recipients; SES allows at most {MAX_RECIPIENTS} per rule")
            for r in recipients:
                if isinstance(r, str) and (not r.strip() or " " in r.strip()):
                    self.err(name, f"recipient {r!r} is not an address or domain")
        actions = rule.get("Actions") or []
        if len(actions) > MAX_ACTIONS:
            self.err(name, f"{len(actions)} actions; SES allows at most {MAX_ACTIONS} per rule")
        deps = self.depends_on(name)
        s3_before = []
        for i, action in enumerate(actions):
            self.counts["actions"] += 1
            where = f"{name} action {i + 1}"
            keys = set(action) & ACTION_KEYS
            if len(keys) != 1 or len(action) != 1:
                self.err(where, f"each action holds exactly one action type (got {sorted(action)})")
                continue
            kind = keys.pop()
            body = action[kind] or {}
            if kind == "AddHeaderAction":
                self.add_header(where, body)
            elif kind == "StopAction":
                if body.get("Scope") != "RuleSet":
                    self.err(where, f"StopAction Scope must be RuleSet (got {body.get('Scope')!r})")
            elif kind == "S3Action":
                s3_before.append(body)
                self.s3_action(where, name, rname, body, deps)
            elif kind == "LambdaAction":
                self.lambda_action(where, name, rname, body, deps, s3_before)

    def add_header(self, where, body):
        hn, hv = body.get("HeaderName"), body.get("HeaderValue")
        if not isinstance(hn, str) or not HEADER_NAME.match(hn):
            self.err(where, f"AddHeader HeaderName {hn!r} must be 1-50 characters of [A-Za-z0-9-]")
        if isinstance(hv, str):
            if len(hv) > MAX_HEADER_VALUE:
                self.err(where, f"AddHeader HeaderValue is {len(hv)} characters; at most {MAX_HEADER_VALUE}")
            if "\r" in hv or "\n" in hv:
                self.err(where, "AddHeader HeaderValue must not contain CR or LF")
        elif hv is None:
            self.err(where, "AddHeader HeaderValue is required")

    def s3_action(self, where, rule, rname, body, deps):
        bucket = ref_target(body.get("BucketName"))
        policies = [p for p, r in self.t.of_type("AWS::S3::BucketPolicy").items()
                    if ref_target((r.get("Properties") or {}).get("Bucket")) == bucket]
        if not policies:
            self.err(where, f"no AWS::S3::BucketPolicy for bucket {bucket!r} letting {SES} write")
            return
        if not deps & set(policies):
            self.err(rule, f"must DependsOn the bucket policy {policies[0]} (SES probes the bucket "
                           "when the rule is created)")
        ok = False
        for p in policies:
            doc = self.res[p]["Properties"].get("PolicyDocument") or {}
            for st in doc.get("Statement") or []:
                principal = (st.get("Principal") or {})
                svc = principal.get("Service") if isinstance(principal, dict) else None
                actions = st.get("Action")
                actions = [actions] if isinstance(actions, str) else (actions or [])
                if st.get("Effect") != "Allow" or svc != SES or "s3:PutObject" not in actions:
                    continue
                cond = (st.get("Condition") or {}).get("StringEquals") or {}
                arn = sub_text(cond.get("AWS:SourceArn"))
                if "AWS:SourceAccount" in cond and arn and rname and arn.endswith(f":receipt-rule/{rname}"):
                    ok = True
        if not ok:
            self.err(where, f"bucket policy must allow {SES} s3:PutObject with AWS:SourceAccount and "
                            f"AWS:SourceArn ending in :receipt-rule/{rname}")

    def kms_reader(self, where, fn, rname, env, s3):
        """A function reading mail the S3 action encrypts needs the key to decrypt it with, and a
        grant to unwrap SES's data keys in this rule's encryption context (docs/ses.md §3.3)."""
        key = when_set(s3.get("KmsKeyArn"))
        if key is None:
            return
        if when_set(env.get(KMS_KEY_VAR)) != key:
            self.err(where, f"the S3 action encrypts with KmsKeyArn, but {fn} does not set "
                            f"{KMS_KEY_VAR} to that key: it would refuse every message")
        for st in function_statements(self.t.function_prop(fn, "Policies")):
            actions = st.get("Action")
            actions = [actions] if isinstance(actions, str) else (actions or [])
            cond = (st.get("Condition") or {}).get("StringEquals") or {}
            if (st.get("Effect") == "Allow" and "kms:Decrypt" in actions
                    and when_set(st.get("Resource")) == key
                    and cond.get("kms:EncryptionContext:aws:ses:rule-name") == rname):
                return
        self.err(where, f"{fn} has no kms:Decrypt on the S3 action's key conditioned on "
                        f"kms:EncryptionContext:aws:ses:rule-name = {rname!r}")

    def lambda_action(self, where, rule, rname, body, deps, s3_before):
        fn = ref_target(body.get("FunctionArn"))
        if fn not in self.res:
            self.err(where, "FunctionArn must !GetAtt a function of this template")
            return
        binary = self.t.function_binary(fn)
        inv = body.get("InvocationType", "Event")
        if inv == "RequestResponse":
            if binary not in REQUEST_RESPONSE_BINARIES:
                self.err(where, f"{fn} runs RequestResponse; only {sorted(REQUEST_RESPONSE_BINARIES)} "
                                "decide mail flow, everything else must be Event")
            timeout = self.t.function_prop(fn, "Timeout")
            if isinstance(timeout, int) and timeout > 30:
                self.err(where, f"{fn} Timeout {timeout}s exceeds SES's 30 s RequestResponse limit")
        elif inv != "Event":
            self.err(where, f"InvocationType {inv!r} must be Event or RequestResponse")
        env = self.t.function_env(fn)
        if RAW_BUCKET_VAR in env:
            match = [a for a in s3_before
                     if a.get("BucketName") == env[RAW_BUCKET_VAR]
                     and (a.get("ObjectKeyPrefix") or "") == (env.get(RAW_PREFIX_VAR) or "")]
            if not match:
                self.err(where, f"{fn} reads the message from {RAW_BUCKET_VAR}/{RAW_PREFIX_VAR}, but no "
                                "earlier S3Action in this rule writes that bucket and prefix (the Lambda "
                                "event carries no body)")
            for action in match:
                self.kms_reader(where, fn, rname, env, action)
        perms = [p for p, r in self.t.of_type("AWS::Lambda::Permission").items()
                 if ref_target((r.get("Properties") or {}).get("FunctionName")) == fn
                 and (r.get("Properties") or {}).get("Principal") == SES]
        if not perms:
            self.err(where, f"no AWS::Lambda::Permission lets {SES} invoke {fn}")
            return
        good = []
        for p in perms:
            pp = self.res[p]["Properties"]
            arn = sub_text(pp.get("SourceArn"))
            if pp.get("Action") != "lambda:InvokeFunction":
                self.err(p, "Action must be lambda:InvokeFunction")
            elif "SourceAccount" not in pp:
                self.err(p, "SourceAccount is required (confused-deputy protection)")
            elif not arn or not rname or not arn.endswith(f":receipt-rule/{rname}"):
                continue
            else:
                good.append(p)
        if not good:
            self.err(where, f"no permission for {fn} with SourceAccount and a SourceArn ending in "
                            f":receipt-rule/{rname}")
        elif not deps & set(good):
            self.err(rule, f"must DependsOn {good[0]} (SES probes the function when the rule is created)")

    def function(self, fn):
        self.counts["functions"] += 1
        r = self.res[fn]
        meta = r.get("Metadata") or {}
        if meta.get("BuildMethod") not in ("rust-cargolambda", "makefile"):
            self.err(fn, "Metadata.BuildMethod must be rust-cargolambda or makefile")
        for key, want in (("Runtime", "provided.al2023"), ("Handler", "bootstrap")):
            if self.t.function_prop(fn, key) != want:
                self.err(fn, f"{key} must be {want!r}")
        # arm64, literally or as a parameter whose default is arm64 (x86_64 is for sam local).
        arch = self.t.function_prop(fn, "Architectures")
        if isinstance(arch, list) and len(arch) == 1 and isinstance(arch[0], dict) and "Ref" in arch[0]:
            arch = [self.param_default(arch[0])]
        if arch != ["arm64"]:
            self.err(fn, "Architectures must be ['arm64'] (or a parameter defaulting to it)")
        code = self.t.function_prop(fn, "CodeUri")
        binary = self.t.function_binary(fn)
        manifest = os.path.join(self.base, str(code), "Cargo.toml")
        if not isinstance(code, str) or not os.path.isfile(manifest):
            self.err(fn, f"CodeUri {code!r} has no Cargo.toml")
        elif binary:
            text = open(manifest, encoding="utf-8").read()
            if not re.search(r'\[\[bin\]\][^\[]*name\s*=\s*"' + re.escape(binary) + '"', text):
                self.err(fn, f"{manifest} declares no [[bin]] named {binary!r}")
        if binary:
            self.env_names(fn, binary)

    def number(self, value, default):
        value = self.param_default(value)
        if value is None:
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    def queue_of(self, value):
        """The logical id of a template AWS::SQS::Queue that `value` (!GetAtt Q.Arn) names."""
        target = ref_target(value)
        if target and (self.res.get(target) or {}).get("Type") == "AWS::SQS::Queue":
            return target
        return None

    def per_job_seconds(self, fn, binary):
        """The worst case of one batch job: the bounding variable from the function's environment,
        else the crate's default for it."""
        var, unit, source, pattern = PER_JOB_WORST_CASE[binary]
        value = self.param_default(self.t.function_env(fn).get(var))
        if value is None or value == "":
            path = os.path.join(ROOT, source)
            m = re.search(pattern, open(path, encoding="utf-8").read()) if os.path.isfile(path) else None
            if not m:
                self.err(fn, f"{var} is unset and its default is not found in {source}")
                return None
            value = m.group(1).replace("_", "")
        extra = 0.0
        if binary in PER_JOB_AWS_BUDGET:
            source, pattern = PER_JOB_AWS_BUDGET[binary]
            path = os.path.join(ROOT, source)
            m = re.search(pattern, open(path, encoding="utf-8").read()) if os.path.isfile(path) else None
            if not m:
                self.err(fn, f"the per-job AWS budget is not found in {source}")
                return None
            extra = float(m.group(1))
        try:
            return float(value) * unit + extra
        except ValueError:
            self.err(fn, f"{var} {value!r} is not a number")
            return None

    def sqs_triggers(self):
        """(function, where, properties) of every SQS trigger: an AWS::Lambda::EventSourceMapping
        from a queue of this template to one of its functions, or a SAM `Type: SQS` event (refused
        by sqs_scope, checked here all the same). Properties use the mapping's names (Queue is
        EventSourceArn)."""
        fns = self.t.of_type("AWS::Serverless::Function")
        out = []
        for fn in fns:
            for name, ev in (self.t.properties(fn).get("Events") or {}).items():
                if (ev or {}).get("Type") == "SQS":
                    props = dict(ev.get("Properties") or {})
                    props["EventSourceArn"] = props.pop("Queue", None)
                    out.append((fn, f"{fn} event {name}", props))
        for name, m in self.t.of_type("AWS::Lambda::EventSourceMapping").items():
            props = (m.get("Properties") or {})
            source = ref_target(props.get("EventSourceArn"))
            if (self.res.get(source) or {}).get("Type") != "AWS::SQS::Queue":
                continue
            fn = ref_target(props.get("FunctionName"))
            if fn not in fns:
                self.err(name, "FunctionName must !Ref an AWS::Serverless::Function of this template "
                               "(to check its timeout against the batch)")
                continue
            out.append((fn, name, props))
        return out

    def sqs_consumer(self, fn, where, props):
        """A function fed by an SQS queue: its timeout covers a whole batch, the queue hides a
        message long enough for retries of it, and what fails repeatedly is redriven to a dead-letter
        queue (the shape `mailroom replay` reads)."""
        timeout = self.number(self.t.function_prop(fn, "Timeout"), DEFAULT_TIMEOUT_S)
        queue = self.queue_of(props.get("EventSourceArn"))
        if queue is None:
            self.err(where, "the queue must !GetAtt an AWS::SQS::Queue of this template (to check its settings)")
            return
        binary = self.t.function_binary(fn)
        batch = self.number(props.get("BatchSize"), DEFAULT_BATCH)
        if binary not in PER_JOB_WORST_CASE:
            self.err(where, f"no per-job worst case is known for {binary!r} (PER_JOB_WORST_CASE)")
        elif timeout is not None and batch is not None:
            job = self.per_job_seconds(fn, binary)
            if job is not None and timeout < batch * job + BATCH_MARGIN_S:
                self.err(where, f"Timeout {timeout:g} s is below BatchSize {batch:g} x {job:g} s per job "
                                f"+ {BATCH_MARGIN_S} s margin = {batch * job + BATCH_MARGIN_S:g} s: a batch of "
                                "slow jobs times out and its finished jobs run again")
        qprops = self.t.properties(queue)
        vis = self.number(qprops.get("VisibilityTimeout"), DEFAULT_VISIBILITY_S)
        if timeout is not None and vis is not None and vis < VISIBILITY_FACTOR * timeout:
            self.err(queue, f"VisibilityTimeout {vis:g} s is below {VISIBILITY_FACTOR} x the timeout of its "
                            f"consumer {fn} ({VISIBILITY_FACTOR * timeout:g} s)")
        self.redrive(queue)

    def sqs_scope(self):
        """No role may receive from or delete on every queue: a function's SQS actions name their
        queues. SAM's `Type: SQS` event is refused because it always attaches
        AWSLambdaSQSQueueExecutionRole (ReceiveMessage and DeleteMessage on "*")."""
        for fn in self.t.of_type("AWS::Serverless::Function"):
            for name, ev in (self.t.properties(fn).get("Events") or {}).items():
                if (ev or {}).get("Type") == "SQS":
                    self.err(f"{fn} event {name}", f"a SAM Type SQS event attaches {SQS_MANAGED_POLICY} "
                             "(sqs:ReceiveMessage and sqs:DeleteMessage on every queue): declare an "
                             "AWS::Lambda::EventSourceMapping and grant the poller its queue in Policies")
            policies = self.t.function_prop(fn, "Policies") or []
            for entry in ([policies] if isinstance(policies, (str, dict)) else policies):
                if isinstance(entry, str):
                    self.managed(fn, entry)
                elif isinstance(entry, dict) and "Statement" in entry:
                    self.statements(fn, entry["Statement"])
        for name, r in self.t.of_type("AWS::IAM::Role").items():
            props = r.get("Properties") or {}
            for arn in props.get("ManagedPolicyArns") or []:
                self.managed(name, arn)
            for p in props.get("Policies") or []:
                self.statements(name, ((p or {}).get("PolicyDocument") or {}).get("Statement"))
        for type_ in IAM_POLICY_TYPES:
            for name, r in self.t.of_type(type_).items():
                doc = (r.get("Properties") or {}).get("PolicyDocument") or {}
                self.statements(name, doc.get("Statement") if isinstance(doc, dict) else None)

    def forward_events(self):
        """A forward function sends with a configuration set that never auto-suppresses (one
        complaint about a forwarded spam would put the operator's own inbox on the suppression
        list, after which SES accepts every forward to it and sends none) and that publishes
        bounces, complaints, rejections and delays to a topic someone reads: a subscription and
        an alarm on it."""
        for fn in self.t.of_type("AWS::Serverless::Function"):
            if self.t.function_binary(fn) != "forward":
                continue
            cs = ref_target(self.t.function_env(fn).get("MAILROOM_FORWARD_CONFIGURATION_SET"))
            if cs not in self.t.of_type("AWS::SES::ConfigurationSet"):
                self.err(fn, "MAILROOM_FORWARD_CONFIGURATION_SET must !Ref an AWS::SES::ConfigurationSet "
                             "of this template (without one, the account's suppression list applies)")
                continue
            reasons = ((self.t.properties(cs).get("SuppressionOptions") or {}).get("SuppressedReasons"))
            if reasons != []:
                self.err(cs, "SuppressionOptions.SuppressedReasons must be [] for forwarded mail: "
                             f"{reasons!r} would auto-suppress the operator's own inbox after one bounce "
                             "or complaint, and SES then drops every later forward to it unsent")
            topics = set()
            for name, d in self.t.of_type("AWS::SES::ConfigurationSetEventDestination").items():
                props = d.get("Properties") or {}
                if ref_target(props.get("ConfigurationSetName")) != cs:
                    continue
                dest = props.get("EventDestination") or {}
                missing = FORWARD_EVENTS - {str(e) for e in dest.get("MatchingEventTypes") or []}
                if missing:
                    self.err(name, f"MatchingEventTypes misses {', '.join(sorted(missing))}")
                topic = ref_target((dest.get("SnsDestination") or {}).get("TopicARN"))
                if topic:
                    topics.add(topic)
            if not topics:
                self.err(cs, "no event destination publishes its events to an SNS topic of this template")
            for topic in sorted(topics):
                subscribed = any(ref_target((r.get("Properties") or {}).get("TopicArn")) == topic
                                 for r in self.t.of_type("AWS::SNS::Subscription").values())
                alarmed = any(topic in json.dumps((r.get("Properties") or {}).get("Dimensions"))
                              for r in self.t.of_type("AWS::CloudWatch::Alarm").values())
                if not subscribed:
                    self.err(topic, "forward's events reach no subscriber: nobody would read them")
                if not alarmed:
                    self.err(topic, "no CloudWatch alarm watches forward's events topic")

    # ---------------------------------------------------------------- the domain
    def identities(self):
        """A domain identity signs with 2048-bit Easy DKIM keys and has a MAIL FROM domain of its
        own, so what SES sends for it aligns with the domain on DKIM and SPF."""
        for name, r in self.t.of_type("AWS::SES::EmailIdentity").items():
            props = r.get("Properties") or {}
            if isinstance(props.get("EmailIdentity"), str) and "@" in props["EmailIdentity"]:
                continue
            length = (props.get("DkimSigningAttributes") or {}).get("NextSigningKeyLength")
            if length != DKIM_KEY_LENGTH:
                self.err(name, f"DkimSigningAttributes.NextSigningKeyLength must be {DKIM_KEY_LENGTH} "
                               f"(got {length!r}): SES's default is 1024-bit keys")
            if not (props.get("MailFromAttributes") or {}).get("MailFromDomain"):
                self.err(name, "MailFromAttributes.MailFromDomain is required: without a MAIL FROM domain "
                               "of its own, mail SES sends for the domain fails SPF alignment")

    def mail_from_domains(self):
        """The MAIL FROM domains of the template's identities, as their !Sub text."""
        return {sub_text((self.t.properties(n).get("MailFromAttributes") or {}).get("MailFromDomain"))
                for n in self.t.of_type("AWS::SES::EmailIdentity")} - {None}

    def dns_records(self):
        """Route 53 records: the receiving MX and the MAIL FROM MX name the stack's Region, the
        MAIL FROM domain has SES's SPF record, and each DKIM CNAME pairs a token's name with the
        same token's value."""
        mail_from = self.mail_from_domains()
        spf_names, mx_names = set(), set()
        for name, r in self.t.of_type("AWS::Route53::RecordSet").items():
            self.counts["records"] += 1
            props = r.get("Properties") or {}
            kind = props.get("Type")
            values = props.get("ResourceRecords") or []
            texts = [sub_text(v) for v in values]
            record_name = sub_text(props.get("Name"))
            if kind == "MX":
                for v in texts:
                    if v and "inbound-smtp." in v and v != INBOUND_MX:
                        self.err(name, f"MX {v!r} must be {INBOUND_MX!r}: SES receives only in the "
                                       "Region of the stack's rule set")
                    if v and "feedback-smtp." in v:
                        if v != MAIL_FROM_MX:
                            self.err(name, f"MAIL FROM MX {v!r} must be {MAIL_FROM_MX!r}")
                        if record_name not in mail_from:
                            self.err(name, f"MX {v!r} is on {record_name!r}, which is no identity's "
                                           "MailFromAttributes.MailFromDomain")
                        mx_names.add(record_name)
            elif kind == "TXT" and any(t and "v=spf1" in t and "amazonses.com" in t for t in texts):
                if texts != [MAIL_FROM_SPF]:
                    self.err(name, f"the MAIL FROM SPF record must be exactly {MAIL_FROM_SPF}")
                spf_names.add(record_name)
            elif kind == "CNAME":
                self.dkim_record(name, props, values)
        for domain in sorted(mx_names - spf_names):
            self.err("Resources", f"the MAIL FROM domain {domain!r} has an MX but no SPF record "
                                  f"{MAIL_FROM_SPF}")

    def dkim_record(self, name, props, values):
        target = props.get("Name")
        att = target.get("Fn::GetAtt") if isinstance(target, dict) else None
        if isinstance(att, str):
            att = att.split(".", 1)
        if not (isinstance(att, list) and len(att) == 2 and str(att[1]).startswith("DkimDNSTokenName")):
            return
        want = [att[0], att[1].replace("DkimDNSTokenName", "DkimDNSTokenValue")]
        got = [v.get("Fn::GetAtt") for v in values if isinstance(v, dict)]
        got = [g.split(".", 1) if isinstance(g, str) else g for g in got]
        if got != [want]:
            self.err(name, f"the CNAME named by {'.'.join(att)} must point at {'.'.join(want)} "
                           f"(got {values!r})")

    # ---------------------------------------------------------------- IP address filters
    def receipt_filters(self):
        """Receipt filters (account-wide, before any rule runs): a valid policy and CIDR, no
        unconditional block of every address, and for filters filled from a list parameter one
        slot per entry the parameter admits, each created only when its entry is given."""
        slots = {}
        for name, r in self.t.of_type("AWS::SES::ReceiptFilter").items():
            self.counts["filters"] += 1
            f = ((r.get("Properties") or {}).get("Filter") or {})
            ip = f.get("IpFilter") or {}
            policy, cidr = ip.get("Policy"), ip.get("Cidr")
            if policy not in FILTER_POLICIES:
                self.err(name, f"IpFilter.Policy must be Block or Allow (got {policy!r})")
            if isinstance(f.get("Name"), str) and not FILTER_NAME.match(f["Name"]):
                self.err(name, f"filter name {f['Name']!r} is invalid (letters, digits, _ and -, start "
                               "and end alphanumeric, under 64)")
            if isinstance(cidr, str):
                try:
                    net = ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    self.err(name, f"Cidr {cidr!r} is not an IP address or CIDR range")
                    continue
                if policy == "Block" and net.prefixlen == 0 and "Condition" not in r:
                    self.err(name, f"blocks every sender ({cidr}) unconditionally: all mail to the "
                                   "account and Region would be refused; make it a deployment choice "
                                   "(a parameter and a Condition)")
                continue
            slot = list_slot(cidr)
            if slot is None:
                self.err(name, "Cidr must be a literal or one entry of a list parameter "
                               "(!Select [i, !Split [\",\", !Join [\"\", [!Ref P, \",,,\"]]]])")
                continue
            param, index, pad = slot
            cond = self.t.conditions.get(r.get("Condition"))
            if cond != {"Fn::Not": [{"Fn::Equals": [cidr, ""]}]}:
                self.err(name, f"entry {index + 1} of {param} must be created only when given: Condition "
                               f"!Not [!Equals [<the same !Select>, \"\"]] (got {r.get('Condition')!r})")
            slots.setdefault(param, []).append((index, pad, name))
        for param, found in sorted(slots.items()):
            self.list_slots(param, found)

    def list_slots(self, param, found):
        pattern = (self.params.get(param) or {}).get("AllowedPattern") or ""
        bound = LIST_BOUND.findall(pattern)
        if not bound:
            self.err(param, "AllowedPattern must bound the number of entries ({0,N}): an entry past "
                            "the last filter slot would be dropped silently")
            return
        entries = int(bound[-1]) + 1
        indices = sorted(i for i, _, _ in found)
        for i in range(entries):
            if i not in indices:
                self.err(param, f"entry {i + 1} of {param} has no filter slot (Select index {i}): "
                                f"AllowedPattern admits {entries} entries")
        for index, pad, name in found:
            if index >= entries:
                self.err(name, f"Select index {index} is past the {entries} entries {param} admits")
            elif pad < entries - 1:
                self.err(name, f"the padding of {pad} commas leaves Select index {entries - 1} out of "
                               "range for a short list: the deploy fails")
        if len(indices) != len(set(indices)):
            self.err(param, "two filters take the same entry")

    def managed(self, where, policy):
        text = sub_text(policy) if not isinstance(policy, str) else policy
        if text and SQS_MANAGED_POLICY in text:
            self.err(where, f"{SQS_MANAGED_POLICY} allows sqs:ReceiveMessage and sqs:DeleteMessage on every "
                            "queue: grant the poller its queue in an inline statement instead")

    def statements(self, where, sts):
        for st in ([sts] if isinstance(sts, dict) else sts or []):
            if isinstance(st, dict) and isinstance(st.get("Fn::If"), list):
                # Either branch may be the one deployed.
                self.statements(where, [b for b in st["Fn::If"][1:] if isinstance(b, dict)])
                continue
            if not isinstance(st, dict) or st.get("Effect") != "Allow":
                continue
            actions = st.get("Action") or []
            actions = [actions] if isinstance(actions, str) else actions
            sqs = [a for a in actions if isinstance(a, str) and (a == "*" or a.lower().startswith("sqs:"))]
            resources = st.get("Resource") or []
            resources = [resources] if not isinstance(resources, list) else resources
            wild = [r for r in resources if "*" in (sub_text(r) or "")]
            if sqs and wild:
                self.err(where, f'grants {", ".join(sqs)} on Resource "{wild[0]}": '
                                "an SQS action must name its queues")

    def redrive(self, queue):
        redrive = self.t.properties(queue).get("RedrivePolicy")
        if isinstance(redrive, str):
            try:
                redrive = json.loads(redrive)
            except ValueError:
                redrive = None
        if not isinstance(redrive, dict):
            self.err(queue, "a queue a function consumes needs a RedrivePolicy (deadLetterTargetArn and "
                            "maxReceiveCount): otherwise a job that keeps failing is retried until it expires")
            return
        dlq = self.queue_of(redrive.get("deadLetterTargetArn"))
        count = self.number(redrive.get("maxReceiveCount"), None)
        if dlq is None:
            self.err(queue, "RedrivePolicy.deadLetterTargetArn must !GetAtt an AWS::SQS::Queue of this template")
        if count is None or count < 1:
            self.err(queue, "RedrivePolicy.maxReceiveCount must be a number of at least 1")
        if dlq is not None:
            self.retention_covers(queue, dlq)

    def retention_covers(self, source, dlq):
        # A redriven message keeps its original enqueue time: a DLQ that keeps messages for less
        # time than the source queue deletes them early.
        src = self.number(self.t.properties(source).get("MessageRetentionPeriod"), DEFAULT_RETENTION_S)
        dst = self.number(self.t.properties(dlq).get("MessageRetentionPeriod"), DEFAULT_RETENTION_S)
        if src is not None and dst is not None and dst < src:
            self.err(dlq, f"MessageRetentionPeriod {dst:.0f} s is shorter than that of {source} ({src:.0f} s), "
                          "whose failures it receives")

    def on_failure(self, fn):
        """An Event-invoked function (every Lambda action that is not RequestResponse) sends what
        fails every async retry to an SQS queue of this template: the only place replay reads."""
        invoked_as_event = False
        for r in self.t.of_type("AWS::SES::ReceiptRule").values():
            for action in (((r.get("Properties") or {}).get("Rule") or {}).get("Actions") or []):
                body = action.get("LambdaAction") if isinstance(action, dict) else None
                if body and ref_target(body.get("FunctionArn")) == fn \
                        and body.get("InvocationType", "Event") == "Event":
                    invoked_as_event = True
        if not invoked_as_event:
            return
        cfg = self.t.properties(fn).get("EventInvokeConfig") or {}
        dest = ((cfg.get("DestinationConfig") or {}).get("OnFailure") or {})
        if dest.get("Type") != "SQS" or self.queue_of(dest.get("Destination")) is None:
            self.err(fn, "runs as an Event Lambda action, so EventInvokeConfig.DestinationConfig.OnFailure "
                         "must be Type SQS with Destination !GetAtt a queue of this template (what replay reads)")

    def env_names(self, fn, binary):
        """Every MAILROOM_* variable the template sets on a function must be one its own crate
        reads (`mailroom template env-vars`): a renamed variable, or one meant for another
        function, otherwise fails silently."""
        reads = env_vars().get(binary)
        if reads is None:
            return
        for var in self.t.function_env(fn):
            if var.startswith("MAILROOM_") and var not in reads:
                self.err(fn, f"sets {var}, which its crate ({binary}) does not read")

def list_slot(cidr):
    """(parameter, index, commas of padding) of `!Select [i, !Split [",", !Join ["", [!Ref P,
    ",,,"]]]]`, else None."""
    try:
        index, split = cidr["Fn::Select"]
        delim, joined = split["Fn::Split"]
        empty, (ref, pad) = joined["Fn::Join"]
        if delim != "," or empty != "" or set(pad) - {","}:
            return None
        return ref["Ref"], int(index), len(pad)
    except (TypeError, KeyError, ValueError):
        return None


def check(path):
    c = Checker(path)
    return c, c.run()


def negative(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
    if not files:
        raise SystemExit(f"{folder}: no negative templates")
    bad = 0
    for f in files:
        path = os.path.join(folder, f)
        with open(path, encoding="utf-8") as fh:
            expects = [m.group(1) for m in (re.match(r"#\s*expect:\s*(.+?)\s*$", l) for l in fh) if m]
        if not expects:
            print(f"FAIL {path}: no '# expect:' line")
            bad += 1
            continue
        _, errors = check(path)
        missing = [x for x in expects if not any(x in e for e in errors)]
        other = [e for e in errors if not any(x in e for x in expects)]
        if missing:
            print(f"FAIL {f}: expected an error containing {missing[0]!r}, got {errors or 'none'}")
            bad += 1
        elif other:
            print(f"FAIL {f}: rejected, but also for reasons its '# expect:' lines do not name: {other}")
            bad += 1
        else:
            print(f"ok   {f}: rejected ({errors[0].split(': ', 2)[-1]})")
    if bad:
        raise SystemExit(f"{bad} of {len(files)} negative templates were not rejected as expected")
    print(f"{len(files)} broken templates rejected")


def main(args):
    if args and args[0] == "--negative":
        negative(args[1] if len(args) > 1 else os.path.join(ROOT, "tests/templates"))
    else:
        bad = 0
        for path in args or [os.path.join(ROOT, "template.yaml")]:
            c, errors = check(path)
            for e in errors:
                print(e)
            if errors:
                print(f"{len(errors)} invariant violation(s) in {path}")
                bad += 1
                continue
            n = c.counts
            print(f"{path}: ok ({n['rules']} rules, {n['actions']} actions, {n['functions']} functions, "
                  f"{n['records']} DNS records, {n['filters']} receipt filters)")
        if bad:
            raise SystemExit(f"{bad} template(s) with invariant violations")


if __name__ == "__main__":
    main(sys.argv[1:])
