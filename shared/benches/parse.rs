//! Parse + model cost: every fixture in events/mail, and generated 1 MB and 10 MB messages
//! (text, html and a base64 attachment, the shape that dominates real large mail).
//! Run: `cargo bench --ignore-rust-version -p mailroom --bench parse -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailroom::{Email, Limits};

fn parse_and_serialize(raw: &[u8], limits: &Limits) -> usize {
    match Email::parse(raw, limits) {
        Ok(parsed) => {
            let json = serde_json::to_vec(&parsed.email)
                .map(|j| j.len())
                .unwrap_or(0);
            json + parsed.contents.iter().map(Vec::len).sum::<usize>()
        }
        Err(e) => panic!("benchmark input failed to parse: {e}"),
    }
}

/// A message of about `size` bytes: a text part, an html part, and one base64 attachment.
fn generated(size: usize) -> Vec<u8> {
    let mut raw = String::from(
        "From: Bench <bench@example.com>\r\nTo: inbox+bench@example.org\r\n\
         Subject: generated\r\nDate: Mon, 3 Feb 2025 10:00:00 +0000\r\n\
         Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"bench\"\r\n\r\n--bench\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit =E2=80=94 caf=C3=A9.\r\n";
    for _ in 0..(size / 20 / para.len()).max(1) {
        raw.push_str(para);
    }
    raw.push_str("--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>");
    for _ in 0..(size / 20 / 40).max(1) {
        raw.push_str("<p>Lorem <b>ipsum</b> dolor &amp; sit.</p>\r\n");
    }
    raw.push_str(
        "</body></html>\r\n--alt--\r\n--bench\r\n\
                  Content-Type: application/pdf; name=\"report.pdf\"\r\n\
                  Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
                  Content-Transfer-Encoding: base64\r\n\r\n",
    );
    let remaining = size.saturating_sub(raw.len() + 32);
    let line = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29k\r\n";
    for _ in 0..remaining / line.len() {
        raw.push_str(line);
    }
    raw.push_str("--bench--\r\n");
    raw.into_bytes()
}

fn fixtures(c: &mut Criterion) {
    let files = mailroom_testkit::mail_fixtures();
    let limits = Limits::default();
    let mut group = c.benchmark_group("fixtures");
    let all: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter_map(|p| {
            let name = p.file_stem()?.to_string_lossy().into_owned();
            Some((name, std::fs::read(p).ok()?))
        })
        .collect();
    let total: usize = all.iter().map(|(_, raw)| raw.len()).sum();
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("all", |b| {
        b.iter(|| {
            for (_, raw) in &all {
                black_box(parse_and_serialize(black_box(raw), &limits));
            }
        })
    });
    for (name, raw) in &all {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(name.as_str(), |b| {
            b.iter(|| parse_and_serialize(black_box(raw), &limits))
        });
    }
    group.finish();
}

fn large(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("generated");
    group.sample_size(10);
    for (label, size) in [("1MB", 1024 * 1024), ("10MB", 10 * 1024 * 1024)] {
        let raw = generated(size);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(label, |b| {
            b.iter(|| parse_and_serialize(black_box(&raw), &limits))
        });
    }
    group.finish();
}

criterion_group!(benches, fixtures, large);
criterion_main!(benches);
