"""Reads checkov's JSON report of template.yaml and its variants (scripts/test.d/checkov) and fails
on any finding that is neither fixed nor suppressed in the template with a reason.

    checkov_report.py REPORT CHECKOV_EXIT_STATUS
"""
import json, sys
path, status = sys.argv[1], int(sys.argv[2])
try:
    data = json.load(open(path))
except ValueError:
    sys.exit(f"checkov did not produce a report (exit {status})")
reports = data if isinstance(data, list) else [data]
s = {"passed": 0, "failed": 0, "skipped": 0}
failed, skipped = [], []
for r in reports:
    for k in s:
        s[k] += r.get("summary", {}).get(k, 0)
    res = r.get("results", {})
    failed += res.get("failed_checks", [])
    skipped += res.get("skipped_checks", [])
# One report covers every --file: say what each file got, so a copy that checked nothing shows.
per_file = {}
for kind, checks in (("passed", "passed_checks"), ("failed", "failed_checks"), ("skipped", "skipped_checks")):
    for r in reports:
        for c in r.get("results", {}).get(checks, []):
            counts = per_file.setdefault(c.get("file_path", "?"), {"passed": 0, "failed": 0, "skipped": 0})
            counts[kind] += 1
if len(per_file) > 1:
    for f, n in sorted(per_file.items()):
        print(f"  {f.lstrip('/').split('/')[-1]}: {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped")
for c in skipped:
    reason = (c.get("check_result") or {}).get("suppress_comment") or ""
    if not reason.strip():
        failed.append(c)
        print(f"SKIPPED WITHOUT A REASON {c['check_id']} {c['resource']}")
for c in failed:
    print(f"FAILED {c['check_id']} {c['resource']}: {c['check_name']}")
print(f"checkov: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped")
if not sum(s.values()):
    sys.exit(f"checkov checked nothing (exit {status}): is the template readable?")
sys.exit(1 if failed else 0)
