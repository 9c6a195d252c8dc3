//! Reading a secret string by ARN from AWS Secrets Manager or SSM Parameter Store, once at cold
//! start (the api function's webhook signing secrets).

#[cfg(feature = "aws")]
use super::classify;
#[cfg(feature = "aws")]
use crate::ports::{ErrorKind, PortError};

/// Which service an ARN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretService {
    SecretsManager,
    ParameterStore,
}

impl SecretService {
    /// The service of an ARN in any partition (`aws`, `aws-cn`, `aws-us-gov`, …).
    pub fn of(arn: &str) -> Option<SecretService> {
        let mut parts = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(_region),
            Some(_account),
            Some(rest),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        if !partition.starts_with("aws") {
            return None;
        }
        match service {
            "secretsmanager" if rest.starts_with("secret:") => Some(SecretService::SecretsManager),
            "ssm" if rest.starts_with("parameter/") => Some(SecretService::ParameterStore),
            _ => None,
        }
    }
}

#[cfg(feature = "aws")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_of_every_partition_name_their_service() {
        for partition in ["aws", "aws-cn", "aws-us-gov"] {
            assert_eq!(
                SecretService::of(&format!(
                    "arn:{partition}:secretsmanager:r-1:123456789012:secret:hook-AbCd"
                )),
                Some(SecretService::SecretsManager),
                "{partition}"
            );
            assert_eq!(
                SecretService::of(&format!(
                    "arn:{partition}:ssm:r-1:123456789012:parameter/hook"
                )),
                Some(SecretService::ParameterStore),
                "{partition}"
            );
        }
        for bad in [
            "arn:aws:s3:::bucket",
            "arn:aws:ssm:r:1:document/x",
            "arn:other:secretsmanager:r:1:secret:x",
            "secretsmanager:r:1:secret:x",
        ] {
            assert_eq!(SecretService::of(bad), None, "{bad}");
        }
    }
}
