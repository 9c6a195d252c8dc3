//! Lambda entry point of the activate-ruleset custom resource: wiring only.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_activate_ruleset::{HttpResponder, SesRuleSets, handle};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailroom::logging::init_json();
    let config = mailroom::aws::sdk_config().await;
    // Bounded, so a stuck SES call still leaves time to answer CloudFormation within the timeout.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(Duration::from_secs(20))
        .build();
    let ses_config = aws_sdk_ses::config::Builder::from(&config)
        .timeout_config(timeouts)
        .build();
    let ses = SesRuleSets::new(aws_sdk_ses::Client::from_conf(ses_config));
    let responder = HttpResponder::new()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let (ses, responder) = (&ses, &responder);
        async move {
            handle(&event.payload, ses, responder)
                .await
                .map(|r| serde_json::json!({ "Status": r.status, "PhysicalResourceId": r.physical_resource_id }))
        }
    }))
    .await
}
