//! Times the whole normalise step (raw MIME → [`Email`] → JSON, in process) and mail-parser's bare
//! parse on the same messages, for `scripts/parse-speed`, which times Python's `email` beside it.
//!
//! `cargo run --release --ignore-rust-version -p mailroom --example normalise_speed -- RUNS FILE...`
//!
//! Every file is read first and passed over once untimed; then each run times one pass over all
//! of them, both ways, taking the two in turns so that machine noise falls on both alike. Prints
//! one JSON line: the message count and bytes, and the median seconds per pass of each.

use std::hint::black_box;
use std::time::Instant;

use mailroom::{Email, Limits};

/// What a function does with a message before it writes anything: the model, its JSON and the
/// decoded attachments (their total length keeps the work from being optimised away).
fn normalise(raw: &[u8], limits: &Limits) -> usize {
    match Email::parse(raw, limits) {
        Ok(parsed) => {
            let json = serde_json::to_vec(&parsed.email).map_or(0, |j| j.len());
            json + parsed.contents.iter().map(Vec::len).sum::<usize>()
        }
        // Rejected input (empty, not MIME) costs its checks: Python is timed on it too.
        Err(_) => 0,
    }
}

/// mail-parser 1.0 alone: its part tree, nothing decoded that it does not decode itself.
fn bare(raw: &[u8]) -> usize {
    mail_parser::MessageParser::new()
        .parse(raw)
        .map_or(0, |m| m.parts().len())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().ok_or("usage: RUNS FILE...")?.parse()?;
    let mut messages = Vec::new();
    for path in args {
        messages.push(std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?);
    }
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let limits = Limits::default();
    // One untimed pass of each first: a fresh process pays page faults growing its heap and
    // cold caches (the Python pass ran just before), and would charge them to whichever runs
    // first.
    for raw in &messages {
        black_box(normalise(black_box(raw), &limits));
        black_box(bare(black_box(raw)));
    }
    let (mut normalised, mut parsed) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        for raw in &messages {
            black_box(normalise(black_box(raw), &limits));
        }
        normalised.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        for raw in &messages {
            black_box(bare(black_box(raw)));
        }
        parsed.push(start.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({
            "messages": messages.len(),
            "bytes": bytes,
            "normalise_s": median(normalised),
            "bare_s": median(parsed),
        })
    );
    Ok(())
}
