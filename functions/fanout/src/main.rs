//! The `fanout` Lambda binary: wiring only (see the crate's lib for the handler).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom::SesEvent;
use mailroom::aws::SnsPublisher;
use mailroom::config::ProcessEnv;
use mailroom_fanout::{Config, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailroom::logging::init_json();
    let config = Config::from_env(&ProcessEnv)?;
    let sdk = mailroom::aws::sdk_config().await;
    let store = mailroom::aws::mail_store(&sdk, config.locations.kms_key.as_deref());
    let publisher = SnsPublisher::from_conf(&sdk);
    let (config, store, publisher) = (&config, &store, &publisher);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SesEvent>| async move {
        handle(&event.payload, config, store, publisher).await
    }))
    .await
}
