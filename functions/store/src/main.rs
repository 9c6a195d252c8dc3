//! The `store` Lambda binary: wiring only (see the crate's lib for the handler).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom::SesEvent;
use mailroom::config::ProcessEnv;
use mailroom_store::{Config, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailroom::logging::init_json();
    let config = Config::from_env(&ProcessEnv)?;
    let store = mailroom::aws::mail_store(
        &mailroom::aws::sdk_config().await,
        config.locations.kms_key.as_deref(),
    );
    let (config, store) = (&config, &store);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SesEvent>| async move {
        handle(&event.payload, config, store).await
    }))
    .await
}
