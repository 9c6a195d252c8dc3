//! Scores reply and signature extraction on the labelled corpus (`tests/corpora/reply/`) and
//! times it on ordinary and hostile bodies.
//!
//! `cargo run --release --ignore-rust-version -p mailroom --example reply_score [-- --record]`
//!
//! Prints per corpus: talon_std exact matches and mean token F1; forge detection accuracy and
//! line-level precision, recall and F1. `--record` writes them to
//! `tests/corpora/reply/scores.json`, the floor `shared/tests/reply_scores.rs` holds them to.
//! `--peers FILE` also scores other parsers' outputs on the same items (written by
//! `scripts/reply-peers`) with the same code, in one table.

use std::hint::black_box;
use std::time::Instant;

use mailroom::email::reply::{Context, reply};
use mailroom_testkit::reply_corpus::{
    Item, corpus_dir, items, our_reply, our_scores, our_signature, score_replies, score_signatures,
    select, signature_lines,
};
use serde_json::Value;

fn main() {
    let all = items();
    let scores = our_scores(&all);
    let n = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let t = &scores["talon_std"];
    println!(
        "talon_std  exact {}/{}  mean token F1 {:.3}",
        t["exact"],
        t["items"],
        n(&t["mean_token_f1"])
    );
    for name in ["forge", "forge_P"] {
        let s = &scores[name];
        println!(
            "{name:<10} detection {}/{}  line P {:.3}  R {:.3}  F1 {:.3}",
            s["detected_right"],
            s["items"],
            n(&s["line_precision"]),
            n(&s["line_recall"]),
            n(&s["line_f1"])
        );
    }
    let neg = &scores["forge_N"];
    println!(
        "forge_N    detection {}/{}",
        neg["detected_right"], neg["items"]
    );
    if std::env::args().any(|a| a == "--record") {
        let path = corpus_dir().join("scores.json");
        let text = serde_json::to_string_pretty(&scores).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("writing {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("recorded {}", path.display());
    }

    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--misses") {
        misses(&all);
    }
    if let Some(file) = args
        .iter()
        .position(|a| a == "--peers")
        .and_then(|i| args.get(i + 1))
    {
        peers(&all, file);
    }

    let corpus: Vec<String> = all.iter().map(|i| i.input.clone()).collect();
    speed("corpus (204 items)", &corpus, None);
    speed("100,000 '>' lines", &[quoted_lines(100_000)], None);
    speed("one 1 MB line", &["x".repeat(1 << 20)], None);
    speed("1 MB of 'On 1 wrote:'", &[attributions(1 << 20)], None);
    speed("10,000 nested blockquotes", &[], Some(&nested(10_000)));
    speed("1 MB of '<' ", &[], Some(&"<".repeat(1 << 20)));
}

/// Prints each forge item whose signature lines we get wrong, for looking into.
fn misses(all: &[Item]) {
    for item in select(all, &["forge_P", "forge_N"]) {
        let sig = our_signature(&item.input, &item.sender);
        let got = sig
            .as_deref()
            .map(|s| signature_lines(&item.input, s))
            .unwrap_or_default();
        if got != item.sig_lines {
            println!(
                "--- {}/{} from {:?}: labelled {:?}, ours {:?}",
                item.corpus, item.id, item.sender, item.sig_lines, got
            );
            let lines: Vec<&str> = item.input.lines().collect();
            let from = item.sig_lines.iter().chain(&got).min().copied();
            let from = from.unwrap_or(lines.len()).saturating_sub(3);
            for (i, line) in lines.iter().enumerate().skip(from) {
                let mark = match (item.sig_lines.contains(&i), got.contains(&i)) {
                    (true, true) => "=",
                    (true, false) => "-",
                    (false, true) => "+",
                    _ => " ",
                };
                println!("{mark}{i:>3}| {line}");
            }
        }
    }
}

/// A tool's reply for an item.
type ReplyOf<'a> = dyn Fn(&Item) -> String + 'a;
/// A tool's signature for an item, if it found one.
type SignatureOf<'a> = dyn Fn(&Item) -> Option<String> + 'a;

/// One table row per tool: ours, then each peer in `file` ({tool: {version, reply, signature,
/// items: {"corpus/id": {reply, signature}}}}); `—` where a tool gives no such output.
fn peers(all: &[Item], file: &str) {
    let raw = std::fs::read(file).unwrap_or_else(|e| panic!("reading {file}: {e}"));
    let tools: Value = serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
    let talon = select(all, &["talon_std"]);
    let forge = select(all, &["forge_P", "forge_N"]);
    println!();
    println!(
        "| tool | talon_std exact | talon_std token F1 | forge detection | forge line P | R | F1 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, reply: Option<&ReplyOf>, sig: Option<&SignatureOf>| {
        let (exact, f1) = reply.map_or(("—".into(), "—".into()), |r| {
            let s = score_replies(&talon, r);
            (
                format!("{}/{}", s.exact, s.items),
                format!("{:.3}", s.mean_token_f1),
            )
        });
        let cells = sig.map_or(vec!["—".to_string(); 4], |g| {
            let s = score_signatures(&forge, g);
            vec![
                format!("{}/{}", s.detected_right, s.items),
                format!("{:.3}", s.precision),
                format!("{:.3}", s.recall),
                format!("{:.3}", s.f1),
            ]
        });
        println!("| {name} | {exact} | {f1} | {} |", cells.join(" | "));
    };
    row(
        "mailroom (ours)",
        Some(&|i: &Item| our_reply(&i.input, &i.sender)),
        Some(&|i: &Item| our_signature(&i.input, &i.sender)),
    );
    for (name, tool) in tools.as_object().into_iter().flatten() {
        let out = |i: &Item, field: &str| -> Option<String> {
            let key = format!("{}/{}", i.corpus, i.id);
            tool["items"][&key][field].as_str().map(str::to_string)
        };
        let reply = |i: &Item| out(i, "reply").unwrap_or_default();
        let sig = |i: &Item| out(i, "signature");
        let label = format!("{name} {}", tool["version"].as_str().unwrap_or("?"));
        row(
            &label,
            tool["reply"]
                .as_bool()
                .unwrap_or(false)
                .then_some(&reply as _),
            tool["signature"]
                .as_bool()
                .unwrap_or(false)
                .then_some(&sig as _),
        );
    }
    println!();
}

fn quoted_lines(n: usize) -> String {
    "reply\n".to_string() + &"> quoted line of text\n".repeat(n)
}

fn attributions(bytes: usize) -> String {
    "On 1 Jan Bob wrote:\n".repeat(bytes / 20)
}

fn nested(n: usize) -> String {
    format!(
        "<p>new</p>{}quoted{}",
        "<blockquote type=\"cite\">".repeat(n),
        "</blockquote>".repeat(n)
    )
}

/// Runs [`reply`] over the bodies until a second has passed, and prints MB/s.
fn speed(label: &str, texts: &[String], html: Option<&str>) {
    let bytes: usize = texts.iter().map(String::len).sum::<usize>() + html.map_or(0, str::len);
    let started = Instant::now();
    let mut passes = 0u32;
    while passes == 0 || started.elapsed().as_secs_f64() < 1.0 {
        for t in texts {
            let cx = Context {
                sender: "Bob Example <bob@example.com>",
                subject: "Re: hello",
            };
            black_box(reply(Some(t), None, cx));
        }
        if let Some(h) = html {
            black_box(reply(None, Some(h), Context::default()));
        }
        passes += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let mb = bytes as f64 * f64::from(passes) / 1e6;
    println!("speed  {label:<28} {:>8.1} MB/s", mb / secs);
}
