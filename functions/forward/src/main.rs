//! The `forward` Lambda binary: wiring only (see the crate's lib for the handler).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom::SesEvent;
use mailroom::config::ProcessEnv;
use mailroom_forward::{AwsAdapters, Config, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailroom::logging::init_json();
    let config = Config::from_env(&ProcessEnv)?;
    let aws = AwsAdapters::from_conf(
        &mailroom::aws::sdk_config().await,
        config.locations.kms_key.as_deref(),
    );
    let maps = config.map_cache();
    // Read the map at cold start; a failure here is retried by the first invocation, whose
    // error then reaches Lambda's retries and the dead-letter queue instead of failing init.
    if let Err(e) = maps.get(&aws.parameters).await {
        tracing::error!(error = %e, "forward map not loaded at cold start");
    }
    let deps = aws.deps(&maps);
    let config = &config;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SesEvent>| async move {
        handle(&event.payload, config, deps).await
    }))
    .await
}
