//! CloudFormation custom resource that makes the stack's SES receipt rule set the active one.
//!
//! CloudFormation can create a receipt rule set but not activate it, and only one set is active
//! per account and Region. This function handles the custom resource's lifecycle:
//!
//! - `Create` / `Update`: `SetActiveReceiptRuleSet(RuleSetName)`; the physical id is the set name.
//! - `Delete`: deactivate (`SetActiveReceiptRuleSet` with no name) only if our set is still the
//!   active one, so deleting the stack never switches off a set someone activated since. An
//!   active set cannot be deleted, which is why this runs before the rule set is removed.
//!
//! Every request gets a response PUT to its pre-signed `ResponseURL`, failures included: a custom
//! resource that never answers hangs the stack for an hour.
//!
//! Handler: [`handle`]`(&serde_json::Value, &dyn RuleSets, &dyn Responder) -> Result<CfnResponse, Error>`.
//! It returns `Err` only when the response could not be delivered (or the event has no
//! `ResponseURL` at all), so Lambda's async retries try again.
//!
//! # Layout
//! - this file: the request, the [`RuleSets`] port and [`handle`];
//! - [`ses`]: the SES adapter of [`RuleSets`]; [`respond`]: answering CloudFormation.

pub mod respond;
#[cfg(feature = "aws")]
pub mod ses;

use async_trait::async_trait;
use mailroom::diagnostic::FunctionError;
use mailroom::ports::PortError;
use serde::{Deserialize, Serialize};

pub use respond::{HttpResponder, Responder};
#[cfg(feature = "aws")]
pub use ses::SesRuleSets;

/// It reads no `MAILROOM_*` variable: everything comes with the CloudFormation request.
pub fn env_vars() -> Vec<&'static str> {
    Vec::new()
}

/// CloudFormation caps the whole response body at 4096 bytes; the reason is the part that grows.
const MAX_REASON: usize = 1024;

/// The SES calls this resource needs (classic SES API).
#[async_trait]
pub trait RuleSets: Send + Sync {
    /// Name of the active receipt rule set in this Region, if any.
    async fn active(&self) -> Result<Option<String>, PortError>;
    /// Activates `name`; `None` deactivates receiving altogether.
    async fn set_active(&self, name: Option<&str>) -> Result<(), PortError>;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the event has no ResponseURL, so CloudFormation cannot be answered: {0}")]
    NoResponseUrl(String),
    #[error("could not deliver the response to CloudFormation: {0}")]
    Respond(String),
}

impl FunctionError for Error {
    const FUNCTION: &'static str = "ActivateRuleset";

    /// CloudFormation is answered at most once: nothing here is worth a second invocation.
    fn is_retryable(&self) -> bool {
        false
    }

    fn variant(&self) -> &'static str {
        match self {
            Error::NoResponseUrl(_) => "NoResponseUrl",
            Error::Respond(_) => "Respond",
        }
    }
}

mailroom::impl_diagnostic!(Error);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The fields of a custom resource request this handler uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnRequest {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    #[serde(default)]
    pub resource_properties: Properties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Properties {
    #[serde(default)]
    pub rule_set_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

/// The body PUT to the `ResponseURL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnResponse {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub no_echo: bool,
    pub data: ResponseData,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResponseData {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rule_set_name: Option<String>,
}

/// Handles one custom resource event and always tries to answer CloudFormation.
pub async fn handle(
    event: &serde_json::Value,
    ses: &dyn RuleSets,
    responder: &dyn Responder,
) -> Result<CfnResponse, Error> {
    let Some(url) = event.get("ResponseURL").and_then(|v| v.as_str()) else {
        return Err(Error::NoResponseUrl(summarize(event)));
    };
    let response = match serde_json::from_value::<CfnRequest>(event.clone()) {
        Ok(request) => apply(&request, ses).await,
        Err(e) => malformed(event, &format!("malformed custom resource event: {e}")),
    };
    match response.status {
        Status::Success => tracing::info!(
            physical_resource_id = %response.physical_resource_id,
            "{}",
            response.reason
        ),
        Status::Failed => tracing::error!(
            physical_resource_id = %response.physical_resource_id,
            reason = %response.reason,
            "custom resource request failed"
        ),
    }
    responder
        .respond(url, &response)
        .await
        .map_err(|e| Error::Respond(e.to_string()))?;
    Ok(response)
}

async fn apply(request: &CfnRequest, ses: &dyn RuleSets) -> CfnResponse {
    let name = request
        .resource_properties
        .rule_set_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    match request.request_type {
        RequestType::Create | RequestType::Update => {
            let Some(name) = name else {
                // A failed Create still needs a physical id; CloudFormation sends it back on the
                // rollback Delete, where it must not match any real set.
                let id = request
                    .physical_resource_id
                    .clone()
                    .unwrap_or_else(|| format!("{}-invalid", request.logical_resource_id));
                return reply(
                    request,
                    Status::Failed,
                    id,
                    "property RuleSetName is required",
                    None,
                );
            };
            match ses.set_active(Some(name)).await {
                Ok(()) => reply(
                    request,
                    Status::Success,
                    name.to_string(),
                    &format!("receipt rule set {name} is active"),
                    Some(name),
                ),
                Err(e) => reply(
                    request,
                    Status::Failed,
                    name.to_string(),
                    &format!("activating receipt rule set {name}: {e}"),
                    None,
                ),
            }
        }
        RequestType::Delete => delete(request, ses).await,
    }
}

async fn delete(request: &CfnRequest, ses: &dyn RuleSets) -> CfnResponse {
    // The physical id is the set this resource activated; after an Update that renamed the set,
    // CloudFormation deletes the old resource with the old id.
    let ours = request
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| request.logical_resource_id.clone());
    let active = match ses.active().await {
        Ok(active) => active,
        Err(e) => {
            return reply(
                request,
                Status::Failed,
                ours.clone(),
                &format!("reading the active receipt rule set before deactivating {ours}: {e}"),
                None,
            );
        }
    };
    if active.as_deref() != Some(ours.as_str()) {
        let now = active.as_deref().unwrap_or("none");
        return reply(
            request,
            Status::Success,
            ours.clone(),
            &format!("receipt rule set {ours} is not active (active: {now}); left as is"),
            None,
        );
    }
    match ses.set_active(None).await {
        Ok(()) => reply(
            request,
            Status::Success,
            ours.clone(),
            &format!("receipt rule set {ours} deactivated"),
            None,
        ),
        Err(e) => reply(
            request,
            Status::Failed,
            ours.clone(),
            &format!("deactivating receipt rule set {ours}: {e}"),
            None,
        ),
    }
}

fn reply(
    request: &CfnRequest,
    status: Status,
    physical_resource_id: String,
    reason: &str,
    rule_set_name: Option<&str>,
) -> CfnResponse {
    CfnResponse {
        status,
        reason: truncate(reason),
        physical_resource_id,
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        no_echo: false,
        data: ResponseData {
            rule_set_name: rule_set_name.map(str::to_string),
        },
    }
}

/// A FAILED answer built from whatever identifiers the unparseable event does carry.
fn malformed(event: &serde_json::Value, reason: &str) -> CfnResponse {
    let field = |k: &str| {
        event
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let logical = field("LogicalResourceId");
    let physical = event
        .get("PhysicalResourceId")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{logical}-invalid"));
    CfnResponse {
        status: Status::Failed,
        reason: truncate(reason),
        physical_resource_id: physical,
        stack_id: field("StackId"),
        request_id: field("RequestId"),
        logical_resource_id: logical,
        no_echo: false,
        data: ResponseData::default(),
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_REASON {
        return s.to_string();
    }
    let mut end = MAX_REASON;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The event, cut to a log-line size.
fn summarize(event: &serde_json::Value) -> String {
    let s = event.to_string();
    truncate(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_REASON);
        let t = truncate(&s);
        assert!(t.len() <= MAX_REASON + '…'.len_utf8());
        assert!(t.ends_with('…'));
    }

    #[test]
    fn response_serializes_in_cloudformation_shape() {
        let r = CfnResponse {
            status: Status::Failed,
            reason: "x".into(),
            physical_resource_id: "p".into(),
            stack_id: "s".into(),
            request_id: "r".into(),
            logical_resource_id: "l".into(),
            no_echo: false,
            data: ResponseData::default(),
        };
        let v = serde_json::to_value(&r).expect("serializes");
        assert_eq!(v["Status"], "FAILED");
        assert_eq!(v["PhysicalResourceId"], "p");
        assert_eq!(v["NoEcho"], false);
        assert!(v["Data"].is_object());
    }
}
