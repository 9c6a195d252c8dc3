//! Structured JSON logs for the Lambda functions (one object per line, CloudWatch-friendly).

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; `RUST_LOG` (or `AWS_LAMBDA_LOG_LEVEL`) sets the level.
pub fn init_json() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .and_then(|s| EnvFilter::try_new(s.to_ascii_lowercase()).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // A second init (tests, the in-process emulator) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}
