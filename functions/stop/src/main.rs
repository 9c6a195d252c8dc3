//! The `stop` Lambda binary: wiring only (see the crate's lib for the handler).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom::SesEvent;
use mailroom::aws::S3Store;
use mailroom::config::ProcessEnv;
use mailroom::ports::ObjectStore;
use mailroom_stop::{Config, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailroom::logging::init_json();
    let config = Config::from_env(&ProcessEnv)?;
    let store = match config.needs_store() {
        true => Some(S3Store::from_conf(&mailroom::aws::sdk_config().await)),
        false => None,
    };
    let (config, store) = (&config, store.as_ref().map(|s| s as &dyn ObjectStore));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SesEvent>| async move {
        handle(&event.payload, config, store).await
    }))
    .await
}
