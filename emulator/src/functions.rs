//! Our Lambda functions, run in process: each template function is matched to its crate by its
//! cargo-lambda binary name, its `Config` is built from the template's (resolved) environment,
//! and its real handler is called with the emulator's ports.

use crate::error::FunctionError;
use crate::ports::Ports;
use anyhow::Context;
use async_trait::async_trait;
use mailroom::SesEvent;
use mailroom::envelope::Decrypting;
use mailroom::ports::ObjectStore;
use std::collections::HashMap;
use std::sync::Arc;

/// What a function returned, as the emulator shows it.
#[derive(Debug, Clone, Default)]
pub struct Returned {
    /// The `disposition` of a RequestResponse answer, verbatim.
    pub disposition: Option<String>,
    pub summary: String,
}

#[async_trait]
pub trait Function: Send + Sync {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, FunctionError>;

    /// A batch from the function's retry queue, its second trigger in the template (api only).
    async fn invoke_sqs(
        &self,
        _event: &mailroom_api::SqsEvent,
        _ports: &Ports,
    ) -> Result<Returned, FunctionError> {
        Err(FunctionError::new("this function has no retry queue"))
    }

    /// How the function retries, when it keeps a retry queue of its own (api).
    fn retries(&self) -> Option<Retries> {
        None
    }
}

/// The retry schedule and queues of a function that retries on its own (the api function), as
/// its configuration reads them from the template's environment.
#[derive(Debug, Clone)]
pub struct Retries {
    pub policy: mailroom::webhook::delivery::RetryPolicy,
    pub queue_url: String,
    pub dlq_url: String,
}

/// Settings the emulator supplies in place of cloud-only configuration.
#[derive(Debug, Clone)]
pub struct LocalOverrides {
    /// Used as `MAILROOM_WEBHOOK_SECRET` when the template's environment has none (a secret
    /// ARN cannot be read without AWS).
    pub webhook_secret: String,
    /// Told the api functions' secrets, to check the signatures of what it receives.
    pub sink: Option<std::sync::Arc<crate::sink::WebhookSink>>,
}

/// The variables a function reads, by its cargo-lambda binary name: `None` for a binary that is
/// not one of ours.
pub fn env_vars(binary: &str) -> Option<Vec<&'static str>> {
    FUNCTIONS
        .iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, vars)| vars())
}

/// A function crate's `env_vars`: the `MAILROOM_*` variables its `Config::from_env` reads.
pub type EnvVars = fn() -> Vec<&'static str>;

/// Every function crate by binary name, with the `MAILROOM_*` variables it reads.
pub const FUNCTIONS: &[(&str, EnvVars)] = &[
    ("stop", mailroom_stop::env_vars),
    ("bounce", mailroom_bounce::env_vars),
    ("store", mailroom_store::env_vars),
    ("fanout", mailroom_fanout::env_vars),
    ("api", mailroom_api::env_vars),
    ("activate-ruleset", mailroom_activate_ruleset::env_vars),
    ("forward", mailroom_forward::env_vars),
];

/// Builds the in-process function for a template function, failing with a message that names it.
pub fn build(
    logical_id: &str,
    binary: &str,
    template_env: &HashMap<String, String>,
    overrides: &LocalOverrides,
) -> anyhow::Result<Box<dyn Function>> {
    let what = || format!("function {logical_id} ({binary}): its Environment in the template");
    let mut env = template_env.clone();
    Ok(match binary {
        "stop" => Box::new(Stop {
            config: mailroom_stop::Config::from_env(&env).with_context(what)?,
        }),
        "bounce" => Box::new(Bounce {
            config: mailroom_bounce::Config::from_env(&env).with_context(what)?,
        }),
        "store" => Box::new(Store {
            config: mailroom_store::Config::from_env(&env).with_context(what)?,
        }),
        "fanout" => Box::new(Fanout {
            config: mailroom_fanout::Config::from_env(&env).with_context(what)?,
        }),
        "api" => {
            let has_secret = env
                .get(mailroom_api::SECRET_VAR)
                .is_some_and(|v| !v.trim().is_empty());
            if !has_secret {
                env.insert(
                    mailroom_api::SECRET_VAR.to_string(),
                    overrides.webhook_secret.clone(),
                );
            }
            let config = mailroom_api::Config::from_env(&env).with_context(what)?;
            if let Some(sink) = &overrides.sink {
                sink.add_secrets(config.secrets());
            }
            Box::new(Api { config })
        }
        "forward" => {
            let config = mailroom_forward::Config::from_env(&env).with_context(what)?;
            Box::new(Forward {
                maps: config.map_cache(),
                config,
            })
        }
        other => anyhow::bail!(
            "function {logical_id}: binary {other:?} is not one of mailroom's functions, so the emulator cannot run it"
        ),
    })
}

/// The store a function reads raw mail through, as `mailroom::aws::mail_store` builds it in
/// Lambda: it decrypts what the S3 action encrypted under the function's `MAILROOM_KMS_KEY_ARN`.
fn mail_store(
    ports: &Ports,
    locations: &mailroom::layout::Locations,
) -> Decrypting<Arc<dyn ObjectStore>> {
    let store = Decrypting::new(ports.objects.clone());
    match &locations.kms_key {
        Some(key) => store.with_keys(ports.data_keys.clone(), Some(key.clone())),
        None => store,
    }
}

fn summarize<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("(unprintable result: {e})"))
}

struct Store {
    config: mailroom_store::Config,
}

#[async_trait]
impl Function for Store {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, FunctionError> {
        let store = mail_store(ports, &self.config.locations);
        let report = mailroom_store::handle(event, &self.config, &store)
            .await
            .map_err(FunctionError::new)?;
        Ok(Returned {
            disposition: None,
            summary: summarize(&report.outcomes),
        })
    }
}

struct Stop {
    config: mailroom_stop::Config,
}

#[async_trait]
impl Function for Stop {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, FunctionError> {
        let store = self.config.needs_store().then_some(ports.objects.as_ref());
        let answer = mailroom_stop::handle(event, &self.config, store)
            .await
            .map_err(FunctionError::new)?;
        Ok(Returned {
            summary: summarize(&answer),
            disposition: Some(answer.disposition),
        })
    }
}

struct Bounce {
    config: mailroom_bounce::Config,
}

#[async_trait]
impl Function for Bounce {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, FunctionError> {
        let answer = mailroom_bounce::handle(event, &self.config, ports.bouncer.as_ref())
            .await
            .map_err(FunctionError::new)?;
        Ok(Returned {
            summary: summarize(&answer),
            disposition: Some(answer.disposition),
        })
    }
}

struct Fanout {
    config: mailroom_fanout::Config,
}

#[async_trait]
impl Function for Fanout {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, FunctionError> {
        let store = mail_store(ports, &self.config.locations);
        let report = mailroom_fanout::handle(event, &self.config, &store, ports.publisher.as_ref())
            .await
            .map_err(FunctionError::new)?;
        Ok(Returned {
            disposition: None,
            summary: summarize(&report.outcomes),
        })
    }
}

struct Api {
    config: mailroom_api::Config,
}

#[async_trait]
impl Function for Api {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, FunctionError> {
        let store = mail_store(ports, &self.config.locations);
        let deps = mailroom_api::Deps {
            store: &store,
            queue: ports.queue.as_ref(),
            http: ports.http.as_ref(),
        };
        let report = mailroom_api::handle_ses(event, &self.config, deps)
            .await
            .map_err(FunctionError::new)?;
        Ok(Returned {
            disposition: None,
            summary: summarize(&report.steps),
        })
    }

    async fn invoke_sqs(
        &self,
        event: &mailroom_api::SqsEvent,
        ports: &Ports,
    ) -> Result<Returned, FunctionError> {
        let store = mail_store(ports, &self.config.locations);
        let deps = mailroom_api::Deps {
            store: &store,
            queue: ports.queue.as_ref(),
            http: ports.http.as_ref(),
        };
        let response = mailroom_api::handle_sqs(event, &self.config, deps)
            .await
            .map_err(FunctionError::new)?;
        Ok(Returned {
            disposition: None,
            summary: summarize(&response),
        })
    }

    fn retries(&self) -> Option<Retries> {
        Some(Retries {
            policy: self.config.policy.clone(),
            queue_url: self.config.retry_queue_url.clone(),
            dlq_url: self.config.dlq_url.clone(),
        })
    }
}

struct Forward {
    config: mailroom_forward::Config,
    /// Built once, as the Lambda does at cold start.
    maps: mailroom_forward::map::MapCache,
}

#[async_trait]
impl Function for Forward {
    async fn invoke(&self, event: &SesEvent, ports: &Ports) -> Result<Returned, FunctionError> {
        let store = mail_store(ports, &self.config.locations);
        let deps = mailroom_forward::Deps {
            store: &store,
            sender: ports.mailer.as_ref(),
            parameters: ports.parameters.as_ref(),
            maps: &self.maps,
            metrics: ports.metrics.as_ref(),
        };
        let report = mailroom_forward::handle(event, &self.config, deps)
            .await
            .map_err(FunctionError::new)?;
        Ok(Returned {
            disposition: None,
            summary: summarize(&report.outcomes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn functions_are_the_templates_binaries() {
        let (template, _) = crate::template::project_functions();
        let template: BTreeSet<&str> = template.values().map(String::as_str).collect();
        let ours: BTreeSet<&str> = FUNCTIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            ours, template,
            "FUNCTIONS and the template's Binary properties must name the same functions"
        );
        assert_eq!(ours.len(), FUNCTIONS.len(), "a binary listed twice");
    }
}
