//! The real AWS adapters: one per port, each over the AWS SDK for Rust.
//!
//! Clients are built once per cold start from [`sdk_config`]. `AWS_ENDPOINT_URL` (and the
//! per-service `AWS_ENDPOINT_URL_S3` etc.) is honoured by the SDK itself, which is how tests and
//! `mailroom serve --aws` point the same code at a local emulator; [`ENDPOINT_VAR`] does the same
//! under `sam local invoke`.
//!
//! The adapters need the crate's `aws` feature (the Lambda functions turn it on); without it only
//! what reads no SDK type is here: the endpoint variable, the timeouts, ARN and error-code rules.

#[cfg(feature = "aws")]
pub mod kms;
#[cfg(feature = "aws")]
pub mod s3;
pub mod secrets;
#[cfg(feature = "aws")]
pub mod ses;
#[cfg(feature = "aws")]
pub mod sns;
#[cfg(feature = "aws")]
pub mod sqs;

#[cfg(feature = "aws")]
pub use kms::KmsDataKeys;
#[cfg(feature = "aws")]
pub use s3::S3Store;
#[cfg(feature = "aws")]
pub use ses::SesBouncer;
#[cfg(feature = "aws")]
pub use sns::SnsPublisher;
#[cfg(feature = "aws")]
pub use sqs::SqsQueue;

use crate::ports::ErrorKind;
#[cfg(feature = "aws")]
use crate::ports::PortError;
#[cfg(feature = "aws")]
use aws_sdk_s3::error::ProvideErrorMetadata;
#[cfg(feature = "aws")]
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
#[cfg(feature = "aws")]
use aws_smithy_runtime_api::client::result::SdkError;
use std::time::Duration;

/// An endpoint for every AWS call, set in the template (empty in AWS). `sam local invoke` hands a
/// function only the variables its template declares, and declaring an empty `AWS_ENDPOINT_URL`
/// would make the SDK warn about it on every cold start.
pub const ENDPOINT_VAR: &str = "MAILROOM_AWS_ENDPOINT_URL";

/// A TCP connection to the service must be up within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One try of a call (request sent, response headers read). Generous for a 40 MB PutObject from
/// inside the Region.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(8);
/// A whole call, the SDK's own retries included. Every function's Lambda timeout must leave room
/// for the calls it makes one after another (the api function budgets for them per job).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

#[cfg(feature = "aws")]
/// The timeouts every client of [`sdk_config`] applies to every call: without them a call to a
/// service that stops answering waits until Lambda kills the invocation, and nothing is logged.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The SDK configuration type, for crates that pass one on without depending on aws-config.
#[cfg(feature = "aws")]
pub use aws_config::SdkConfig;

#[cfg(feature = "aws")]
/// The shared SDK configuration from the standard provider chain (and [`ENDPOINT_VAR`]), with
/// [`timeouts`].
pub async fn sdk_config() -> aws_config::SdkConfig {
    let loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts());
    match non_empty_var(ENDPOINT_VAR) {
        Some(url) => loader.endpoint_url(url).load().await,
        None => loader.load().await,
    }
}

#[cfg(feature = "aws")]
/// The S3 store every function reads raw mail through: it decrypts what SES encrypted under
/// `kms_key` (KMS may use no other key), refuses encrypted mail without one, and writes SSE-KMS
/// under `kms_key` when there is one.
pub fn mail_store(
    config: &aws_config::SdkConfig,
    kms_key: Option<&str>,
) -> crate::envelope::Decrypting<S3Store> {
    mail_store_over(S3Store::from_conf(config), config, kms_key)
}

#[cfg(feature = "aws")]
/// [`mail_store`] over a given S3 store (tests hand one with a client of their own).
pub fn mail_store_over(
    s3: S3Store,
    config: &aws_config::SdkConfig,
    kms_key: Option<&str>,
) -> crate::envelope::Decrypting<S3Store> {
    let kms_key = kms_key.map(str::trim).filter(|k| !k.is_empty());
    let s3 = s3.with_sse_kms(kms_key.map(str::to_string));
    let store = crate::envelope::Decrypting::new(s3);
    match kms_key {
        Some(key) => store.with_keys(
            std::sync::Arc::new(KmsDataKeys::from_conf(config)),
            Some(key.to_string()),
        ),
        None => store,
    }
}

#[cfg(feature = "aws")]
/// True when the SDK is pointed at a custom endpoint (an emulator), where path-style S3 is needed.
pub fn custom_endpoint() -> bool {
    [ENDPOINT_VAR, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| non_empty_var(v).is_some())
}

#[cfg(feature = "aws")]
fn non_empty_var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(feature = "aws")]
/// Maps an SDK error onto the retry-relevant [`ErrorKind`] every port speaks.
pub fn classify<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, message) = match err {
        SdkError::TimeoutError(_) => (ErrorKind::Transient, "timed out".to_string()),
        SdkError::DispatchFailure(e) => (ErrorKind::Transient, format!("dispatch failure: {e:?}")),
        SdkError::ResponseError(e) => (ErrorKind::Transient, format!("bad response: {e:?}")),
        SdkError::ConstructionFailure(e) => (
            ErrorKind::Permanent,
            format!("request construction failed: {e:?}"),
        ),
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("");
            let msg = ctx.err().message().unwrap_or("");
            let kind = service_error_kind(status, code);
            if kind == ErrorKind::AccessDenied {
                (
                    kind,
                    format!(
                        "access denied: HTTP {status} {code}: {msg} (the function's IAM policy \
                         does not allow {operation} here; not retried)"
                    ),
                )
            } else {
                (kind, format!("HTTP {status} {code}: {msg}"))
            }
        }
        other => (ErrorKind::Transient, format!("{other:?}")),
    };
    PortError::new(kind, operation, message)
}

/// Status and error code to [`ErrorKind`]; shared by all services.
pub fn service_error_kind(status: u16, code: &str) -> ErrorKind {
    const THROTTLING: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
    ];
    const NOT_FOUND: &[&str] = &["NoSuchKey", "NoSuchBucket", "NotFound", "NotFoundException"];
    // S3, SQS and SES say AccessDenied; Secrets Manager and SSM AccessDeniedException; SNS
    // AuthorizationError. Expired credentials are not among them: new ones make a retry work.
    const DENIED: &[&str] = &[
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "AWS.SimpleQueueService.AccessDenied",
    ];
    if THROTTLING.contains(&code) || status == 429 {
        ErrorKind::Throttled
    } else if code == "ExpiredToken" || code == "ExpiredTokenException" {
        ErrorKind::Transient
    } else if DENIED.contains(&code) || status == 403 {
        ErrorKind::AccessDenied
    } else if NOT_FOUND.contains(&code) || status == 404 {
        ErrorKind::NotFound
    } else if code == "PreconditionFailed" || status == 412 {
        ErrorKind::AlreadyExists
    } else if status >= 500
        || code == "InternalError"
        || code == "ServiceUnavailable"
        // S3: another conditional write of the key is in flight. It may yet fail, so this is
        // no proof the object exists; a retry gets 412 once it does.
        || code == "ConditionalRequestConflict"
    {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_codes_classify() {
        assert_eq!(service_error_kind(503, "SlowDown"), ErrorKind::Throttled);
        assert_eq!(service_error_kind(400, "Throttling"), ErrorKind::Throttled);
        assert_eq!(service_error_kind(404, ""), ErrorKind::NotFound);
        assert_eq!(
            service_error_kind(412, "PreconditionFailed"),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            service_error_kind(500, "InternalError"),
            ErrorKind::Transient
        );
        for (status, code) in [
            (403, "AccessDenied"),
            (400, "AccessDeniedException"),
            (403, "AuthorizationError"),
            (403, "InvalidAccessKeyId"),
        ] {
            assert_eq!(
                service_error_kind(status, code),
                ErrorKind::AccessDenied,
                "{code}"
            );
        }
        assert_eq!(
            service_error_kind(403, "ExpiredToken"),
            ErrorKind::Transient
        );
        assert_eq!(
            service_error_kind(409, "ConditionalRequestConflict"),
            ErrorKind::Transient
        );
    }
}
