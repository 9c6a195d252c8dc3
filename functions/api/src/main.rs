//! The `api` Lambda binary: wiring only (see the crate's lib for the handler). One binary serves
//! both the SES action and the retry queue's SQS trigger.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom::aws::SqsQueue;
use mailroom::config::ProcessEnv;
use mailroom::webhook::http::ReqwestSender;
use mailroom_api::{Config, Deadline, Deps, handle_until};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailroom::logging::init_json();
    let config = Config::from_env(&ProcessEnv)?;
    let sdk = mailroom::aws::sdk_config().await;
    let config = mailroom_api::secrets::resolve(config, &sdk).await?;
    let store = mailroom::aws::mail_store(&sdk, config.locations.kms_key.as_deref());
    let queue = SqsQueue::from_conf(&sdk);
    let http = ReqwestSender::new()?;
    let deps = Deps {
        store: &store,
        queue: &queue,
        http: &http,
    };
    let config = &config;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = Deadline::from_unix_millis(event.context.deadline);
            handle_until(event.payload, config, deps, deadline).await
        },
    ))
    .await
}
