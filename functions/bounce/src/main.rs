//! The `bounce` Lambda binary: wiring only (see the crate's lib for the handler).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom::SesEvent;
use mailroom::aws::SesBouncer;
use mailroom::config::ProcessEnv;
use mailroom_bounce::{Config, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailroom::logging::init_json();
    let config = Config::from_env(&ProcessEnv)?;
    // One client per container: its one-per-second gate spaces this container's SendBounce calls.
    let bouncer = SesBouncer::from_conf(&mailroom::aws::sdk_config().await);
    let (config, bouncer) = (&config, &bouncer);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SesEvent>| async move {
        handle(&event.payload, config, bouncer).await
    }))
    .await
}
