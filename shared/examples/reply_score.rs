//! Scores reply and signature extraction on the labelled corpus (`tests/corpora/reply/`) and
//! times it on ordinary and hostile bodies.
//!
//! `cargo run --release --ignore-rust-version -p mailroom --example reply_score [-- --record]`
//!
//! Prints per corpus: talon_std exact matches and mean token F1; forge detection accuracy and
//! line-level precision, recall and F1. `--record` writes them to
//! `tests/corpora/reply/scores.json`, the floor `shared/tests/reply_scores.rs` holds them to.

use std::hint::black_box;
use std::time::Instant;

use mailroom::email::reply::reply;
use mailroom_testkit::reply_corpus::{corpus_dir, items, our_scores};

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

    let corpus: Vec<String> = all.iter().map(|i| i.input.clone()).collect();
    speed("corpus (204 items)", &corpus, None);
    speed("100,000 '>' lines", &[quoted_lines(100_000)], None);
    speed("one 1 MB line", &["x".repeat(1 << 20)], None);
    speed("1 MB of 'On 1 wrote:'", &[attributions(1 << 20)], None);
    speed("10,000 nested blockquotes", &[], Some(&nested(10_000)));
    speed("1 MB of '<' ", &[], Some(&"<".repeat(1 << 20)));
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
            black_box(reply(Some(t), None, "Bob Example <bob@example.com>"));
        }
        if let Some(h) = html {
            black_box(reply(None, Some(h), ""));
        }
        passes += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let mb = bytes as f64 * f64::from(passes) / 1e6;
    println!("speed  {label:<28} {:>8.1} MB/s", mb / secs);
}
