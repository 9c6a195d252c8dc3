//! Our Lambda functions, run in process: each template function is matched to its crate by its
//! cargo-lambda binary name, its `Config` is built from the template's (resolved) environment,
//! and its real handler is called with the emulator's ports.

use super::ports::Ports;
use anyhow::Context;
use async_trait::async_trait;
use mailroom::SesEvent;
use std::collections::HashMap;

/// What a function returned, as the emulator shows it.
#[derive(Debug, Clone, Default)]
pub struct Returned {
    /// The `disposition` of a RequestResponse answer, verbatim.
    pub disposition: Option<String>,
    pub summary: String,
}

#[async_trait]
pub trait Function: Send + Sync {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, String>;
}

/// Builds the in-process function for a template function, failing with a message that names it.
pub fn build(
    logical_id: &str,
    binary: &str,
    env: &HashMap<String, String>,
) -> anyhow::Result<Box<dyn Function>> {
    let what = || format!("function {logical_id} ({binary}): its Environment in the template");
    Ok(match binary {
        "store" => Box::new(Store {
            config: mailroom_store::Config::from_env(env).with_context(what)?,
        }),
        other => anyhow::bail!(
            "function {logical_id}: binary {other:?} is not one of mailroom's functions, so the emulator cannot run it"
        ),
    })
}

fn summarize<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("(unprintable result: {e})"))
}

struct Store {
    config: mailroom_store::Config,
}

#[async_trait]
impl Function for Store {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, String> {
        let report = mailroom_store::handle(event, &self.config, ports.objects.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Returned {
            disposition: None,
            summary: summarize(&report.outcomes),
        })
    }
}
