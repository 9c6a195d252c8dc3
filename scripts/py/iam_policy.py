"""A function's IAM policy exactly as template.yaml grants it, and IAM users carrying it on a moto
server that enforces IAM (the tests' stand-in for the function's execution role).

    iam_policy.py policy FUNCTION SPEC_JSON            print the resolved policy document
    iam_policy.py users ENDPOINT FUNCTION SPEC_JSON    create one IAM user with the policy and one
                                                       per grant with that grant left out (see
                                                       create_users); print their keys as JSON

SPEC_JSON names what the template's intrinsics resolve to in the test's world:
    {"resources": {"RawMailBucket": {"ref": "bucket-1", "Arn": "arn:aws:s3:::bucket-1"}, ...},
     "params": {"WebhookSecretArn": "arn:..."}, "template": "path/to/template.yaml"}
The administrator's keys for `users` come from MAILROOM_TEST_MOTO_IAM_ADMIN ("KEYID:SECRET"),
printed by `moto_launcher.py start --iam`.

A function's `Policies` are read the way SAM turns them into its role's inline policies: inline
`Statement` documents as they are, SAM policy templates (S3CrudPolicy, SQSSendMessagePolicy, ...)
expanded from the definitions aws-sam-translator itself uses, `!If` on a condition resolved.
Managed policy names are refused: their contents are not in the template.

moto evaluates the Resource element only for S3 and SQS; every other service is checked against
"*", which a statement naming an ARN never matches. For those services the moto user gets the
statement's actions on "*" (actions still enforced) and the grant is reported as `widened`: the
caller checks its resource against the policy itself.
"""

import json
import os
import sys
import uuid

from cfn_template import Resolver, Template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN_VAR = "MAILROOM_TEST_MOTO_IAM_ADMIN"
# moto's default account and the testkit's Region: what ARNs in the test's world carry.
PSEUDO = {"AWS::AccountId": "123456789012", "AWS::Region": "us-east-1", "AWS::Partition": "aws",
          "AWS::StackName": "mailroom", "AWS::URLSuffix": "amazonaws.com"}
RESOURCE_AWARE = {"s3", "sqs"}


def resource_blind(action):
    """Whether moto checks this action against "*" only, whatever the statement names."""
    return action.split(":", 1)[0] not in RESOURCE_AWARE
NO_VALUE = object()


def deep(resolver, v):
    """Resolves intrinsics anywhere in v; `AWS::NoValue` drops the list item or key."""
    if isinstance(v, dict) and len(v) == 1 and (next(iter(v)) == "Ref" or next(iter(v)).startswith("Fn::")):
        if v.get("Ref") == "AWS::NoValue":
            return NO_VALUE
        if "Fn::If" in v:
            cond, yes, no = v["Fn::If"]
            return deep(resolver, yes if resolver.conditions[cond] else no)
        return deep(resolver, resolver.value(v))
    if isinstance(v, dict):
        out = {k: deep(resolver, x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x is not NO_VALUE}
    if isinstance(v, list):
        return [x for x in (deep(resolver, x) for x in v) if x is not NO_VALUE]
    return v


def _sam_templates():
    from samtranslator.policy_template_processor.processor import PolicyTemplatesProcessor
    return PolicyTemplatesProcessor(PolicyTemplatesProcessor.get_default_policy_templates_json())


def statements(template, fn, spec):
    """The function's policy statements, resolved, each with Action and Resource as lists."""
    if fn not in template.resources:
        raise SystemExit(f"{template.path}: no resource {fn}")
    props = template.properties(fn)
    if "Role" in props:
        raise SystemExit(f"{fn}: has its own Role; only SAM Policies are read")
    physical = {k: dict(v) for k, v in (spec.get("resources") or {}).items()}
    resolver = Resolver(template, {k: str(v) for k, v in (spec.get("params") or {}).items()},
                        physical, PSEUDO)
    policies = props.get("Policies") or []
    if isinstance(policies, (str, dict)):
        policies = [policies]
    processor = None
    out = []
    for entry in deep(resolver, policies):
        if isinstance(entry, str):
            raise SystemExit(f"{fn}: managed policy {entry!r}: its contents are not in the template")
        if "Statement" in entry:
            sts = entry["Statement"]
        else:
            (name, values), = entry.items()
            processor = processor or _sam_templates()
            # Expanded with the template's intrinsics still in, then resolved like the rest.
            raw = next(p for p in (props.get("Policies") or []) if isinstance(p, dict) and name in p)
            sts = deep(resolver, processor.convert(name, raw[name] or {}))["Statement"]
        for st in ([sts] if isinstance(sts, dict) else sts):
            st = dict(st)
            for key in ("Action", "Resource"):
                if isinstance(st.get(key), str):
                    st[key] = [st[key]]
            if "NotAction" in st or "NotResource" in st:
                raise SystemExit(f"{fn}: NotAction/NotResource are not supported by this check")
            out.append(st)
    return out


def grants(sts):
    """Every (action, resource) an Allow statement names, in template order."""
    return [{"statement": i, "action": a, "resource": r}
            for i, st in enumerate(sts) if st.get("Effect") == "Allow"
            for a in st["Action"] for r in st["Resource"]]


def document(sts, without=None):
    """A policy document; `without` (a grant) is left out of it."""
    out = []
    for i, st in enumerate(sts):
        if without is None or without["statement"] != i:
            out.append(st)
            continue
        # The statement minus one pair: the other actions keep every resource, the action keeps
        # the other resources.
        others = [a for a in st["Action"] if a != without["action"]]
        if others:
            out.append({**st, "Action": others})
        # "*" stands for every resource the statement names: the action is left out altogether.
        rest = [r for r in st["Resource"] if without["resource"] != "*" and r != without["resource"]]
        if rest:
            out.append({**st, "Action": [without["action"]], "Resource": rest})
    return {"Version": "2012-10-17", "Statement": out}


def moto_view(doc):
    """The document as moto must see it (see the module docs), and the grants widened for it."""
    out, widened = [], []
    for st in doc["Statement"]:
        blind = [a for a in st["Action"] if resource_blind(a)]
        aware = [a for a in st["Action"] if a not in blind]
        if aware:
            out.append({**st, "Action": aware})
        if blind:
            out.append({**st, "Action": blind, "Resource": ["*"]})
            widened += [{"action": a, "resource": r} for a in blind for r in st["Resource"]]
    return {"Version": doc["Version"], "Statement": out}, widened


def create_users(endpoint, fn, sts):
    import boto3
    key_id, _, secret = os.environ.get(ADMIN_VAR, "").partition(":")
    if not key_id or not secret:
        raise SystemExit(f"{ADMIN_VAR} must hold the moto administrator's KEYID:SECRET")
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=PSEUDO["AWS::Region"],
                       aws_access_key_id=key_id, aws_secret_access_key=secret)
    gs = grants(sts)
    # Where moto checks no resources, leaving out one of several resources of an action changes
    # nothing it sees (the rest still widens to "*"): such a grant gets no run of its own, and the
    # action gets one without any of its resources instead. Its resources are checked by the
    # caller (`widened`).
    shared = {(g["statement"], g["action"]) for g in gs if resource_blind(g["action"])
              and sum(1 for h in gs if (h["statement"], h["action"]) == (g["statement"], g["action"])) > 1}
    runs = [g for g in gs if (g["statement"], g["action"]) not in shared]
    runs += [{"statement": i, "action": a, "resource": "*"} for i, a in sorted(shared)]
    users = []
    for without in [None] + runs:
        doc = document(sts, without)
        moto_doc, widened = moto_view(doc)
        name = f"{fn}-{uuid.uuid4().hex[:12]}"
        iam.create_user(UserName=name)
        if moto_doc["Statement"]:
            iam.put_user_policy(UserName=name, PolicyName=fn, PolicyDocument=json.dumps(moto_doc))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users.append({"user": name, "access_key_id": key["AccessKeyId"],
                      "secret_access_key": key["SecretAccessKey"], "without": without,
                      "widened": widened})
    return {"function": fn, "policy": document(sts), "grants": gs, "users": users}


def main(args):
    if len(args) == 3 and args[0] == "policy":
        spec = json.loads(args[2])
        t = Template(spec.get("template") or os.path.join(ROOT, "template.yaml"))
        print(json.dumps(document(statements(t, args[1], spec)), indent=2))
    elif len(args) == 4 and args[0] == "users":
        spec = json.loads(args[3])
        t = Template(spec.get("template") or os.path.join(ROOT, "template.yaml"))
        print(json.dumps(create_users(args[1], args[2], statements(t, args[2], spec))))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
