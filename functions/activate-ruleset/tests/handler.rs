//! The custom resource handler end to end: an in-memory SES fake for the rule-set state and a
//! real HTTP server on 127.0.0.1 standing in for CloudFormation's pre-signed ResponseURL, reached
//! through the real reqwest responder.

use async_trait::async_trait;
use mailroom::ports::{ErrorKind, PortError};
use mailroom_activate_ruleset::{CfnResponse, Error, HttpResponder, RuleSets, Status, handle};
use mailroom_testkit::http::{HttpServer, Recorded, Reply};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use std::sync::Mutex;

/// SES's account-wide "which set is active" state, with optional injected failures.
#[derive(Default)]
struct FakeSes {
    active: Mutex<Option<String>>,
    calls: Mutex<Vec<String>>,
    fail_set: Option<ErrorKind>,
    fail_describe: Option<ErrorKind>,
}

impl FakeSes {
    fn with_active(name: &str) -> Self {
        FakeSes {
            active: Mutex::new(Some(name.to_string())),
            ..Default::default()
        }
    }
    fn active_now(&self) -> Option<String> {
        self.active.lock().expect("lock").clone()
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl RuleSets for FakeSes {
    async fn active(&self) -> Result<Option<String>, PortError> {
        self.calls.lock().expect("lock").push("describe".into());
        if let Some(kind) = self.fail_describe {
            return Err(PortError::new(
                kind,
                "ses:DescribeActiveReceiptRuleSet",
                "injected",
            ));
        }
        Ok(self.active_now())
    }
    async fn set_active(&self, name: Option<&str>) -> Result<(), PortError> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("set {}", name.unwrap_or("<none>")));
        if let Some(kind) = self.fail_set {
            return Err(PortError::new(
                kind,
                "ses:SetActiveReceiptRuleSet",
                "injected",
            ));
        }
        *self.active.lock().expect("lock") = name.map(str::to_string);
        Ok(())
    }
}

/// The CloudFormation response a PUT carried.
fn cfn(put: &Recorded) -> CfnResponse {
    serde_json::from_slice(&put.body).expect("response body is a CloudFormation response")
}

/// An HTTP server answering every request with `status` and recording it.
async fn response_server(status: u16) -> (String, HttpServer) {
    let server = HttpServer::always(Reply::status(status).body("ok")).await;
    (server.url(""), server)
}

fn event(kind: &str, url: &str, name: Option<&str>, physical: Option<&str>) -> Value {
    let mut e = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:mailroom-ActivateRuleSetFunction",
        "ResponseURL": format!("{url}/cloudformation-custom-resource-response-useast1/signed?X-Amz-Signature=abc"),
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/mailroom/1b2c3d4e",
        "RequestId": "5f6a7b8c-1111-2222-3333-444455556666",
        "LogicalResourceId": "ActivateReceiptRuleSet",
        "ResourceType": "Custom::ActivateReceiptRuleSet",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:mailroom-ActivateRuleSetFunction"
        }
    });
    if let Some(name) = name {
        e["ResourceProperties"]["RuleSetName"] = json!(name);
    }
    if let Some(p) = physical {
        e["PhysicalResourceId"] = json!(p);
    }
    e
}

async fn run(ses: &FakeSes, ev: &Value) -> (Result<CfnResponse, Error>, Vec<Recorded>) {
    let (url, seen) = response_server(200).await;
    let mut ev = ev.clone();
    // Point the event at this test's server.
    let path = ev["ResponseURL"].as_str().expect("test io").to_string();
    let rest = path.split_once("/cloudformation").expect("test io").1;
    ev["ResponseURL"] = json!(format!("{url}/cloudformation{rest}"));
    let responder = HttpResponder::new().expect("test io");
    let out = handle(&ev, ses, &responder).await;
    let captured = seen.requests();
    (out, captured)
}

#[tokio::test]
async fn create_activates_and_answers_success() {
    let ses = FakeSes::with_active("someone-elses");
    let (out, captured) = run(&ses, &event("Create", "http://x", Some("mailroom"), None)).await;
    let out = out.expect("test io");
    assert_eq!(ses.active_now().as_deref(), Some("mailroom"));
    assert_eq!(captured.len(), 1, "exactly one response PUT");
    let put = &captured[0];
    assert_eq!(put.method, "PUT");
    assert!(
        put.path.starts_with(
            "/cloudformation-custom-resource-response-useast1/signed?X-Amz-Signature=abc"
        ),
        "{}",
        put.path
    );
    assert_eq!(put.header("content-type"), Some(""));
    let body = cfn(put);
    assert_eq!(body, out);
    assert_eq!(body.status, Status::Success);
    assert_eq!(body.physical_resource_id, "mailroom");
    assert_eq!(body.request_id, "5f6a7b8c-1111-2222-3333-444455556666");
    assert_eq!(body.logical_resource_id, "ActivateReceiptRuleSet");
    assert_eq!(
        body.stack_id,
        "arn:aws:cloudformation:us-east-1:123456789012:stack/mailroom/1b2c3d4e"
    );
    assert_eq!(body.data.rule_set_name.as_deref(), Some("mailroom"));
}

#[tokio::test]
async fn update_to_a_new_name_activates_it_with_a_new_physical_id() {
    let ses = FakeSes::with_active("mailroom");
    let (out, captured) = run(
        &ses,
        &event("Update", "http://x", Some("mailroom-v2"), Some("mailroom")),
    )
    .await;
    assert_eq!(out.expect("test io").physical_resource_id, "mailroom-v2");
    assert_eq!(ses.active_now().as_deref(), Some("mailroom-v2"));
    assert_eq!(cfn(&captured[0]).status, Status::Success);
}

#[tokio::test]
async fn delete_deactivates_only_our_active_set() {
    let ses = FakeSes::with_active("mailroom");
    let (out, _) = run(
        &ses,
        &event("Delete", "http://x", Some("mailroom"), Some("mailroom")),
    )
    .await;
    assert_eq!(out.expect("test io").status, Status::Success);
    assert_eq!(ses.active_now(), None);
    assert_eq!(ses.calls(), vec!["describe", "set <none>"]);
}

#[tokio::test]
async fn delete_leaves_another_active_set_alone() {
    // Someone activated another set after our stack did (or an Update renamed ours).
    let ses = FakeSes::with_active("other-team");
    let (out, captured) = run(
        &ses,
        &event("Delete", "http://x", Some("mailroom"), Some("mailroom")),
    )
    .await;
    assert_eq!(out.expect("test io").status, Status::Success);
    assert_eq!(ses.active_now().as_deref(), Some("other-team"));
    assert_eq!(ses.calls(), vec!["describe"]);
    assert!(cfn(&captured[0]).reason.contains("other-team"));
}

#[tokio::test]
async fn delete_with_nothing_active_succeeds() {
    let ses = FakeSes::default();
    let (out, _) = run(
        &ses,
        &event("Delete", "http://x", Some("mailroom"), Some("mailroom")),
    )
    .await;
    assert_eq!(out.expect("test io").status, Status::Success);
    assert_eq!(ses.calls(), vec!["describe"]);
}

#[tokio::test]
async fn ses_failure_is_answered_as_failed_not_left_hanging() {
    let ses = FakeSes {
        fail_set: Some(ErrorKind::Permanent),
        ..Default::default()
    };
    let (out, captured) = run(&ses, &event("Create", "http://x", Some("mailroom"), None)).await;
    // Answered (so the handler itself succeeded), with FAILED and the SES error as the reason.
    let out = out.expect("test io");
    assert_eq!(out.status, Status::Failed);
    assert_eq!(captured.len(), 1);
    let body = cfn(&captured[0]);
    assert_eq!(body.status, Status::Failed);
    assert!(
        body.reason.contains("ses:SetActiveReceiptRuleSet"),
        "{}",
        body.reason
    );
    assert!(body.reason.contains("mailroom"), "{}", body.reason);
}

#[tokio::test]
async fn describe_failure_on_delete_is_answered_as_failed() {
    let ses = FakeSes {
        active: Mutex::new(Some("mailroom".into())),
        fail_describe: Some(ErrorKind::Throttled),
        ..Default::default()
    };
    let (out, _) = run(
        &ses,
        &event("Delete", "http://x", Some("mailroom"), Some("mailroom")),
    )
    .await;
    assert_eq!(out.expect("test io").status, Status::Failed);
    assert_eq!(
        ses.active_now().as_deref(),
        Some("mailroom"),
        "nothing changed"
    );
}

#[tokio::test]
async fn missing_rule_set_name_fails_and_the_rollback_delete_touches_nothing() {
    let ses = FakeSes::with_active("other-team");
    let (out, _) = run(&ses, &event("Create", "http://x", None, None)).await;
    let out = out.expect("test io");
    assert_eq!(out.status, Status::Failed);
    assert!(out.reason.contains("RuleSetName"));
    assert_eq!(ses.calls(), Vec::<String>::new());
    // CloudFormation rolls back with a Delete carrying the id we returned.
    let id = out.physical_resource_id.clone();
    let (out, _) = run(&ses, &event("Delete", "http://x", None, Some(&id))).await;
    assert_eq!(out.expect("test io").status, Status::Success);
    assert_eq!(ses.active_now().as_deref(), Some("other-team"));
}

#[tokio::test]
async fn malformed_event_with_a_response_url_is_still_answered() {
    let ses = FakeSes::default();
    let mut ev = event("Create", "http://x", Some("mailroom"), None);
    ev["RequestType"] = json!("Explode");
    let (out, captured) = run(&ses, &ev).await;
    assert_eq!(out.expect("test io").status, Status::Failed);
    let body = cfn(&captured[0]);
    assert_eq!(body.status, Status::Failed);
    assert_eq!(body.request_id, "5f6a7b8c-1111-2222-3333-444455556666");
    assert!(body.reason.contains("malformed"), "{}", body.reason);
    assert_eq!(ses.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn event_without_response_url_is_an_error() {
    let ses = FakeSes::default();
    let responder = HttpResponder::new().expect("test io");
    let out = handle(&json!({"RequestType": "Create"}), &ses, &responder).await;
    assert!(matches!(out, Err(Error::NoResponseUrl(_))), "{out:?}");
}

#[tokio::test]
async fn undeliverable_response_is_an_error_so_lambda_retries() {
    let ses = FakeSes::default();
    let responder = HttpResponder::new().expect("test io");
    // A server that rejects the PUT (e.g. an expired pre-signed URL).
    let (url, seen) = response_server(403).await;
    let out = handle(
        &event("Create", &url, Some("mailroom"), None),
        &ses,
        &responder,
    )
    .await;
    assert!(
        matches!(out, Err(Error::Respond(ref m)) if m.contains("403")),
        "{out:?}"
    );
    assert_eq!(seen.requests().len(), 1);
    // And a URL nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("test io");
        l.local_addr().expect("test io").port()
    };
    let out = handle(
        &event(
            "Create",
            &format!("http://127.0.0.1:{port}"),
            Some("mailroom"),
            None,
        ),
        &ses,
        &responder,
    )
    .await;
    assert!(matches!(out, Err(Error::Respond(_))), "{out:?}");
}
