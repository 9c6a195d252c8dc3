//! The labelled reply and signature corpus (`tests/corpora/reply/`) and how replies are scored on
//! it, shared by the regression test (`shared/tests/reply_scores.rs`) and the report that prints
//! the figures (`shared/examples/reply_score.rs`).
//!
//! Replies (talon_std) are scored as the corpus README describes: exact match after normalising
//! whitespace, and bag-of-words token F1. Signatures (forge_P, forge_N) by detection accuracy (a
//! signature or none) and by line-level precision, recall and F1 over every item's lines.

use std::collections::HashMap;
use std::path::PathBuf;

use mailroom::email::reply::{Context, reply};
use serde_json::Value;

use crate::workspace_root;

/// One labelled item of `talon-forge.json`.
#[derive(Debug, Clone)]
pub struct Item {
    pub corpus: String,
    pub id: String,
    pub input: String,
    /// talon_std: the reply without its quote.
    pub expected: Option<String>,
    /// forge: the 0-based indices of the input's signature lines.
    pub sig_lines: Vec<usize>,
    /// forge: the From of the message, as the dataset wrote it.
    pub sender: String,
}

pub fn corpus_dir() -> PathBuf {
    workspace_root().join("tests/corpora/reply")
}

/// Every item of the corpus file, in file order.
pub fn items() -> Vec<Item> {
    let path = corpus_dir().join("talon-forge.json");
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let list: Vec<Value> =
        serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    list.iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Item {
                corpus: s("corpus"),
                id: s("id"),
                input: s("input"),
                expected: v["expected"].as_str().map(str::to_string),
                sig_lines: v["sig_line_idx"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_u64)
                            .map(|n| n as usize)
                            .collect()
                    })
                    .unwrap_or_default(),
                sender: s("sender"),
            }
        })
        .collect()
}

/// Whitespace normalised as the corpus README scores it: each line's end stripped, three or more
/// newlines collapsed to two, the whole stripped.
pub fn normalise(text: &str) -> String {
    let joined = text
        .replace("\r\n", "\n")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::with_capacity(joined.len());
    let mut newlines = 0;
    for c in joined.chars() {
        if c == '\n' {
            newlines += 1;
            continue;
        }
        if newlines > 0 {
            out.push_str(if newlines >= 3 {
                "\n\n"
            } else {
                &"\n\n"[..newlines]
            });
            newlines = 0;
        }
        out.push(c);
    }
    out.trim().to_string()
}

/// Bag-of-words F1 of `got` against `want` (whitespace-separated tokens, case kept).
pub fn token_f1(got: &str, want: &str) -> f64 {
    let (g, w) = (bag(got), bag(want));
    let (ng, nw): (usize, usize) = (g.values().sum(), w.values().sum());
    if ng == 0 && nw == 0 {
        return 1.0;
    }
    let common: usize = g
        .iter()
        .map(|(t, n)| (*n).min(w.get(t).copied().unwrap_or(0)))
        .sum();
    if common == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / ng as f64, common as f64 / nw as f64);
    2.0 * p * r / (p + r)
}

fn bag(s: &str) -> HashMap<&str, usize> {
    let mut m: HashMap<&str, usize> = HashMap::new();
    for t in s.split_whitespace() {
        *m.entry(t).or_default() += 1;
    }
    m
}

/// The input lines a predicted signature covers: its non-blank lines found in the input from the
/// end upwards, in order.
pub fn signature_lines(input: &str, signature: &str) -> Vec<usize> {
    let lines: Vec<&str> = input.lines().collect();
    let mut found = Vec::new();
    let mut upto = lines.len();
    for sig in signature
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if let Some(i) = (0..upto).rev().find(|&i| lines[i].trim() == sig) {
            found.push(i);
            upto = i;
        }
    }
    found.reverse();
    found
}

/// Reply scores on one corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplyScore {
    pub items: usize,
    pub exact: usize,
    pub mean_token_f1: f64,
}

/// Signature scores on one or more corpora.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignatureScore {
    pub items: usize,
    pub detected_right: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// What ours gives as the reply without its quote (signature kept, as talon's labels keep it).
pub fn our_reply(input: &str, sender: &str) -> String {
    reply(Some(input), None, from(sender)).map_or(String::new(), |r| r.unquoted())
}

/// What ours gives as the signature.
pub fn our_signature(input: &str, sender: &str) -> Option<String> {
    reply(Some(input), None, from(sender)).and_then(|r| r.signature)
}

fn from(sender: &str) -> Context<'_> {
    Context {
        sender,
        subject: "",
    }
}

pub fn score_replies(items: &[&Item], predict: impl Fn(&Item) -> String) -> ReplyScore {
    let mut exact = 0;
    let mut f1 = 0.0;
    for item in items {
        let want = normalise(item.expected.as_deref().unwrap_or_default());
        let got = normalise(&predict(item));
        exact += usize::from(got == want);
        f1 += token_f1(&got, &want);
    }
    ReplyScore {
        items: items.len(),
        exact,
        mean_token_f1: if items.is_empty() {
            0.0
        } else {
            f1 / items.len() as f64
        },
    }
}

pub fn score_signatures(
    items: &[&Item],
    predict: impl Fn(&Item) -> Option<String>,
) -> SignatureScore {
    let (mut right, mut tp, mut fp, mut fn_) = (0, 0usize, 0usize, 0usize);
    for item in items {
        let predicted = predict(item)
            .map(|sig| signature_lines(&item.input, &sig))
            .unwrap_or_default();
        right += usize::from(predicted.is_empty() == item.sig_lines.is_empty());
        let hit = predicted
            .iter()
            .filter(|i| item.sig_lines.contains(i))
            .count();
        tp += hit;
        fp += predicted.len() - hit;
        fn_ += item.sig_lines.len()
            - item
                .sig_lines
                .iter()
                .filter(|i| predicted.contains(i))
                .count();
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    SignatureScore {
        items: items.len(),
        detected_right: right,
        precision,
        recall,
        f1,
    }
}

/// The items of the named corpora.
pub fn select<'a>(all: &'a [Item], corpora: &[&str]) -> Vec<&'a Item> {
    all.iter()
        .filter(|i| corpora.contains(&i.corpus.as_str()))
        .collect()
}

/// Our scores on the whole corpus, as recorded in `scores.json`.
pub fn our_scores(all: &[Item]) -> Value {
    let talon = score_replies(&select(all, &["talon_std"]), |i| {
        our_reply(&i.input, &i.sender)
    });
    let sig = |names: &[&str]| {
        let s = score_signatures(&select(all, names), |i| our_signature(&i.input, &i.sender));
        let mut v = serde_json::json!({"items": s.items, "detected_right": s.detected_right});
        // Line figures mean nothing where no line is a signature line (forge_N).
        if s.precision + s.recall > 0.0 {
            v["line_precision"] = round3(s.precision).into();
            v["line_recall"] = round3(s.recall).into();
            v["line_f1"] = round3(s.f1).into();
        }
        v
    };
    serde_json::json!({
        "talon_std": {
            "items": talon.items,
            "exact": talon.exact,
            "mean_token_f1": round3(talon.mean_token_f1),
        },
        "forge": sig(&["forge_P", "forge_N"]),
        "forge_P": sig(&["forge_P"]),
        "forge_N": sig(&["forge_N"]),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
