//! Peak memory of one function's real handler on one message, measured the way Lambda bills it:
//! the resident high-water mark (`VmHWM`) of a process that only builds the function from
//! `template.yaml` as the emulator does and runs its handler once against the local adapters.
//!
//! `cargo run --ignore-rust-version -p mailroom-emulator --example function_rss -- \
//!     BINARY RAW_FILE STATE_DIR [Param=Value ...]`
//!
//! BINARY is the function's cargo-lambda binary (`store`, `fanout`, `api`, `forward`); RAW_FILE is
//! copied to the function's raw location under STATE_DIR (a kernel-side copy, so its bytes never
//! count); the parameters override the template's (e.g. `WebhookUrl=http://127.0.0.1:8080/hook`,
//! `ForwardMap=support@example.com=me@gmail.example`: the event is addressed to support@). Prints
//! `peak_kib=` and `result=` (the handler's report) or `error=` (the handler's error).
//! `scripts/function-rss` runs it on every hostile shape and compares the figure with the
//! function's `MemorySize`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use mailroom::SesEvent;
use mailroom_emulator::functions::{self, LocalOverrides};
use mailroom_emulator::ports::Ports;
use mailroom_emulator::sink::WebhookSink;
use mailroom_emulator::template;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [binary, raw_file, state, params @ ..] = args.as_slice() else {
        bail!("usage: function_rss BINARY RAW_FILE STATE_DIR [Param=Value ...]");
    };
    let template_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let mut options = template::Options::default();
    for p in params {
        let (k, v) = p.split_once('=').context("parameters are Key=Value")?;
        options.params.insert(k.to_string(), v.to_string());
    }
    let loaded = template::load_file(&template_path, &options)?;
    let def = loaded
        .functions
        .values()
        .find(|d| &d.binary == binary)
        .with_context(|| format!("no function in the template runs {binary}"))?;

    let event: SesEvent =
        serde_json::from_slice(&mailroom_testkit::event_file("lambda/store-event.json"))?;
    let id = &event.records[0].ses.mail.message_id;
    let env: &HashMap<String, String> = &def.env;
    let bucket = env
        .get("MAILROOM_RAW_BUCKET")
        .context("the function has no MAILROOM_RAW_BUCKET")?;
    let prefix = env.get("MAILROOM_RAW_PREFIX").map_or("", String::as_str);
    let state = Path::new(state);
    let raw_path = mailroom_emulator::local::LocalObjectStore::new(state)
        .path_of(bucket, &format!("{prefix}{id}"))?;
    if let Some(dir) = raw_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(raw_file, &raw_path).with_context(|| format!("copying {raw_file}"))?;

    let sink = Arc::new(WebhookSink::new(state, false));
    let overrides = LocalOverrides {
        webhook_secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
        sink: None,
    };
    let function = functions::build(&def.logical_id, &def.binary, env, &overrides)?;
    let ports = Ports::local(state, sink)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A handler that refuses the message (a typed error) is measured too: how much it held before
    // it refused is the figure.
    let returned = rt.block_on(function.invoke(&event, &ports));

    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .to_string();
    println!("peak_kib={peak}");
    match returned {
        Ok(r) => println!("result={}", r.summary),
        Err(e) => println!("error={}", e.to_string().replace('\n', " ")),
    }
    Ok(())
}
