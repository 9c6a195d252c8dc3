//! Reading a secret string by ARN from AWS Secrets Manager or SSM Parameter Store, once at cold
//! start (the api function's webhook signing secrets).

use super::classify;
use crate::ports::{ErrorKind, PortError};

/// Which service an ARN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretService {
    SecretsManager,
    ParameterStore,
}

impl SecretService {
    pub fn of(arn: &str) -> Option<SecretService> {
        if arn.starts_with("arn:aws:secretsmanager:") {
            Some(SecretService::SecretsManager)
        } else if arn.starts_with("arn:aws:ssm:") && arn.contains(":parameter/") {
            Some(SecretService::ParameterStore)
        } else {
            None
        }
    }
}

/// The secret's current string value (`SecretString`, or the decrypted parameter value).
pub async fn fetch(config: &aws_config::SdkConfig, arn: &str) -> Result<String, PortError> {
    match SecretService::of(arn) {
        Some(SecretService::SecretsManager) => {
            let client = aws_sdk_secretsmanager::Client::new(config);
            let out = client
                .get_secret_value()
                .secret_id(arn)
                .send()
                .await
                .map_err(|e| classify("secretsmanager:GetSecretValue", &e))?;
            out.secret_string.ok_or_else(|| {
                PortError::new(
                    ErrorKind::Permanent,
                    "secretsmanager:GetSecretValue",
                    format!("{arn} has no SecretString (binary secrets are not supported)"),
                )
            })
        }
        Some(SecretService::ParameterStore) => {
            // GetParameter takes the name (or the ARN); the ARN works across accounts too.
            let client = aws_sdk_ssm::Client::new(config);
            let out = client
                .get_parameter()
                .name(arn)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| classify("ssm:GetParameter", &e))?;
            out.parameter.and_then(|p| p.value).ok_or_else(|| {
                PortError::new(
                    ErrorKind::NotFound,
                    "ssm:GetParameter",
                    format!("{arn} has no value"),
                )
            })
        }
        None => Err(PortError::new(
            ErrorKind::Permanent,
            "secrets",
            format!("{arn} is neither a Secrets Manager secret ARN nor an SSM parameter ARN"),
        )),
    }
}
