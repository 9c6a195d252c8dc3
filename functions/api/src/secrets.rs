//! Resolving `MAILROOM_WEBHOOK_SECRET_ARN` at cold start: the secret's value is the same text
//! `MAILROOM_WEBHOOK_SECRET` would hold (`whsec_…`, several separated by spaces or commas while
//! rotating). A JSON secret `{"secret": "whsec_…"}` (the Secrets Manager console's key/value
//! form) is read too.

use crate::SECRET_ARN_VAR;
#[cfg(feature = "aws")]
use crate::{Config, Secrets};
use mailroom::ports::PortError;
#[cfg(feature = "aws")]
use mailroom::webhook::signing::Secret;
use mailroom::webhook::signing::SigningError;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading {SECRET_ARN_VAR}={arn}: {source}")]
    Fetch { arn: String, source: PortError },
    #[error("the value of {SECRET_ARN_VAR}={arn} is not a webhook secret: {source}")]
    Parse { arn: String, source: SigningError },
}

/// The secret text inside a fetched value.
pub fn secret_text(value: &str) -> String {
    let v = value.trim();
    if v.starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(v)
    {
        for key in [
            "secret",
            "webhookSecret",
            "MAILROOM_WEBHOOK_SECRET",
            "value",
        ] {
            if let Some(serde_json::Value::String(s)) = map.get(key) {
                return s.clone();
            }
        }
    }
    v.to_string()
}

#[cfg(feature = "aws")]
/// Loads the secrets an ARN names; a config with secrets already loaded is returned as is.
pub async fn resolve(
    mut config: Config,
    sdk: &aws_config::SdkConfig,
) -> Result<Config, SecretError> {
    if let Secrets::Arn(arn) = &config.secrets {
        let arn = arn.clone();
        let value = mailroom::aws::secrets::fetch(sdk, &arn)
            .await
            .map_err(|source| SecretError::Fetch {
                arn: arn.clone(),
                source,
            })?;
        let secrets = Secret::parse_list(&secret_text(&value))
            .map_err(|source| SecretError::Parse { arn, source })?;
        config.secrets = Secrets::Loaded(secrets);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_json_values() {
        assert_eq!(secret_text(" whsec_abc \n"), "whsec_abc");
        assert_eq!(secret_text(r#"{"secret":"whsec_x y"}"#), "whsec_x y");
        assert_eq!(secret_text("{not json"), "{not json");
    }
}
