"""The differential gate must fail when quality drops, not only when a class is new.

Usage: test_differential.py (runs in a second, with no binary and no corpus)
"""

import contextlib
import io
import unittest

import differential

TEXT, HTML = "Hello,\nthe report is attached.", "<p>Hello</p>"


def view(text=TEXT, html=HTML, attachments=("report.pdf",)):
    return {
        "subject": "Report",
        "addresses": ["alice@example.com", "bob@example.org"],
        "text": text,
        "html": html,
        "attachment names": list(attachments),
        "attachment sha256": [f"sha-{name}" for name in attachments],
    }


def run(pairs, refused=0):
    """The figures of a fabricated corpus of (mailroom view, Python view) pairs."""
    result = differential.empty_result(len(pairs) + refused)
    for ours, theirs in pairs:
        differential.tally(result, ours, theirs)
    for _ in range(refused):
        differential.count(result, "message:mailroom-refused")
    return result


# Twenty messages that agree, one where only Python finds a text body, one refused: so
# `text:only-python` is already a known class, the case a class-only gate let through.
CORPUS = [(view(), view()) for _ in range(20)] + [(view(text=None), view())]
BASELINE = run(CORPUS, refused=1)
KNOWN = set(BASELINE["classes"])


def verdict(result, baseline=BASELINE):
    rows = differential.gate(baseline, result, KNOWN)
    status, line = differential.conclusion(rows, [], "baseline.json", "triage.md")
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        differential.print_summary(rows, "baseline.json", {})
        print(line)
    return status, rows, summary.getvalue()


def worse(rows):
    return {name for name, _, _, v in rows if v in ("WORSE", "NEW")}


class Gate(unittest.TestCase):
    def test_same_figures_pass(self):
        status, rows, summary = verdict(run(CORPUS, refused=1))
        self.assertEqual(status, 0, summary)
        self.assertEqual({v for *_, v in rows}, {"ok"})

    def test_all_text_bodies_lost_fails(self):
        lost = [(dict(ours, text=None), theirs) for ours, theirs in CORPUS]
        status, rows, summary = verdict(run(lost, refused=1))
        self.assertEqual(status, 1, summary)
        self.assertEqual(worse(rows), {"agree text", "text:only-python"}, summary)
        self.assertIn("FAIL", summary)

    def test_shrunk_corpus_fails(self):
        status, rows, summary = verdict(run(CORPUS[:-5], refused=1))
        self.assertEqual(status, 1, summary)
        self.assertIn("messages", worse(rows), summary)
        self.assertIn("parsed by both", worse(rows), summary)

    def test_one_more_refusal_fails(self):
        status, rows, summary = verdict(run(CORPUS[:-1] + [CORPUS[0]], refused=2))
        self.assertEqual(status, 1, summary)
        self.assertIn("message:mailroom-refused", worse(rows), summary)

    def test_new_class_fails(self):
        renamed = CORPUS + [(view(attachments=("a.pdf",)), view(attachments=("b.pdf",)))]
        status, rows, summary = verdict(run(renamed, refused=1))
        self.assertEqual(status, 1, summary)
        self.assertIn("attachment-names:differs", worse(rows), summary)
        self.assertIn("NEW", summary)

    def test_improvement_passes_and_says_so(self):
        fixed = [(theirs, theirs) for _, theirs in CORPUS]
        status, rows, summary = verdict(run(fixed, refused=1))
        self.assertEqual(status, 0, summary)
        self.assertIn(("text:only-python", 1, 0, "better"), rows)
        self.assertIn("--bless", summary)

    def test_crash_fails(self):
        rows = differential.gate(BASELINE, run(CORPUS, refused=1), KNOWN)
        status, _ = differential.conclusion(rows, ["CRASH (exit 101): x.eml"], "b", "t")
        self.assertEqual(status, 1)


if __name__ == "__main__":
    unittest.main()
