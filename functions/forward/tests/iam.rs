//! The forward function with exactly the IAM policy template.yaml gives it, on a moto server that
//! enforces IAM: with the map in an SSM parameter and a configuration set (the template's fullest
//! shape), it must forward a message and write its marker with that policy, and fail without any
//! one of its grants. With `KmsKeyArn` set the raw mail is encrypted as SES encrypts it, and
//! without `kms:Decrypt` nothing is sent and the invocation fails with a typed error.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::Counts;
use mailroom::aws::S3Store;
use mailroom::ports::{ObjectMeta, ObjectStore};
use mailroom_forward::map::SsmParameters;
use mailroom_forward::sender::SesV2Sender;
use mailroom_forward::{Config, Delivery, Deps, Outcome, handle};
use mailroom_testkit::iam::{self, ACCOUNT, World};

const ID: &str = "fwdiam0000000000000000000000000000000001";
/// The template parameter: the SSM name without its leading slash (the ARN adds the slash back).
const PARAMETER: &str = "mailroom-iam/forward-map";
const CONFIGURATION_SET: &str = "forward-iam";

/// The world of one test: the raw mail in its bucket, the verified domain, the map parameter.
struct Setup {
    bucket: String,
    /// `KmsKeyArn`, under which the raw mail is encrypted.
    kms_key: Option<String>,
    domain: String,
    config: Config,
    event: mailroom::SesEvent,
    marker: String,
    parameter_arn: String,
}

async fn setup(encrypted: bool) -> Setup {
    let srv = iam::server();
    let admin = srv.admin();
    let raw = mailroom_testkit::event_file("mail/forward/dkim-signatures.eml");
    let (bucket, kms_key) = if encrypted {
        let (bucket, key) = srv
            .bucket_with_sealed("forward-iam-kms", ID, raw.clone())
            .await;
        (bucket, Some(key))
    } else {
        let bucket = srv.bucket("forward-iam").await;
        S3Store::new(iam::s3(&admin))
            .put_if_absent(
                &bucket,
                &format!("raw/{ID}"),
                Bytes::from(raw.clone()),
                &ObjectMeta::new("message/rfc822"),
            )
            .await
            .expect("put raw");
        (bucket, None)
    };
    let domain = format!("{}.example.com", mailroom_testkit::unique("fwdiam"));
    let ses = aws_sdk_sesv2::Client::new(&admin);
    ses.create_email_identity()
        .email_identity(&domain)
        .send()
        .await
        .expect("verified domain");
    ses.create_configuration_set()
        .configuration_set_name(CONFIGURATION_SET)
        .send()
        .await
        .ok();
    aws_sdk_ssm::Client::new(&admin)
        .put_parameter()
        .name(format!("/{PARAMETER}"))
        .value("info@example.com=me@gmail.com")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .expect("map parameter");

    let parameter_arn = format!("arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/{PARAMETER}");
    let from = format!("forwarder@{domain}");
    // The template's environment with ForwardMapParameter set (ForwardMap then empty).
    let env = [
        ("MAILROOM_RAW_BUCKET", bucket.as_str()),
        ("MAILROOM_RAW_PREFIX", "raw/"),
        ("MAILROOM_FORWARD_MAP", ""),
        ("MAILROOM_FORWARD_MAP_PARAMETER", parameter_arn.as_str()),
        ("MAILROOM_FORWARD_FROM", from.as_str()),
        ("MAILROOM_FORWARD_CONFIGURATION_SET", CONFIGURATION_SET),
        ("MAILROOM_KMS_KEY_ARN", kms_key.as_deref().unwrap_or("")),
    ];
    let config = Config::from_env(env.as_slice()).expect("config");
    let event = common::event(
        ID,
        &raw,
        "bounces+x1@sender.example.net",
        &["info@example.com"],
        &[],
    );
    Setup {
        bucket,
        kms_key,
        domain,
        config,
        event,
        marker: format!("forwarded/{ID}/me@gmail.com"),
        parameter_arn,
    }
}

impl Setup {
    fn world(&self) -> World {
        self.world_without_key().kms_key(self.kms_key.as_deref())
    }

    /// The template's world with `KmsKeyArn` left empty: its policy grants nothing on KMS.
    fn world_without_key(&self) -> World {
        World::new()
            .bucket("RawMailBucket", &self.bucket)
            .resource("ForwardConfigurationSet", CONFIGURATION_SET)
            .param("DomainName", &self.domain)
            .param("ForwardMapParameter", PARAMETER)
    }

    /// One invocation with `conf`'s credentials, from the message not yet forwarded (no marker,
    /// no claim) and the map read afresh: `Ok` when it was sent and its marker written.
    async fn forward_as(&self, conf: aws_config::SdkConfig) -> Result<(), String> {
        let admin_s3 = iam::s3(&iam::server().admin());
        let (bucket, event, config, marker) =
            (&self.bucket, &self.event, &self.config, &self.marker);
        let listed = admin_s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(marker.clone())
            .send()
            .await
            .map_err(|e| format!("list markers: {e:?}"))?;
        for key in listed.contents().iter().filter_map(|o| o.key()) {
            admin_s3
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| format!("delete {key}: {e:?}"))?;
        }
        let store = iam::mail_store(&conf, self.kms_key.as_deref());
        let sender = SesV2Sender::from_conf(&conf);
        let parameters = SsmParameters(conf);
        let maps = config.map_cache();
        let counts = Counts::default();
        let deps = Deps {
            store: &store,
            sender: &sender,
            parameters: &parameters,
            maps: &maps,
            metrics: &counts,
        };
        let report = handle(event, config, deps)
            .await
            .map_err(|e| e.to_string())?;
        match &report.outcomes[..] {
            [Outcome::Forwarded { deliveries, .. }]
                if matches!(deliveries[..], [Delivery::Sent { .. }]) => {}
            other => return Err(format!("not forwarded: {other:?}")),
        }
        admin_s3
            .head_object()
            .bucket(bucket)
            .key(marker)
            .send()
            .await
            .map_err(|e| format!("no marker after a send: {e:?}"))?;
        Ok(())
    }
}

#[tokio::test]
async fn forward_needs_exactly_its_template_policy() {
    needs_exactly_its_template_policy(false).await;
}

/// With `KmsKeyArn` set, forward decrypts the raw mail and writes its SSE-KMS marker with exactly
/// its template policy, whose KMS grants name exactly the configured key.
#[tokio::test]
async fn forward_decrypts_with_exactly_its_template_policy() {
    needs_exactly_its_template_policy(true).await;
}

async fn needs_exactly_its_template_policy(encrypted: bool) {
    let s = setup(encrypted).await;
    let report =
        iam::least_privilege("ForwardFunction", &s.world(), |conf| s.forward_as(conf)).await;
    let bucket = &s.bucket;
    report.assert_exercised_except_kms(
        s.kms_key.as_deref(),
        &[
            (
                "s3:ListBucket",
                &format!("arn:aws:s3:::{bucket}"),
                "lets a marker not yet written read as 404 rather than 403; moto answers 404 either way",
            ),
            (
                "ses:SendRawEmail",
                "*",
                "AWS authorizes an SES v2 SendEmail with raw content as ses:SendRawEmail; moto checks ses:SendEmail",
            ),
        ],
    );
    // moto does not check SES or SSM resources: the template must name exactly what the
    // function is configured with.
    let sending = vec![
        format!("arn:aws:ses:us-east-1:{ACCOUNT}:identity/{}", s.domain),
        format!("arn:aws:ses:us-east-1:{ACCOUNT}:configuration-set/{CONFIGURATION_SET}"),
    ];
    assert_eq!(report.widened_resources("ses:SendEmail"), sending);
    assert_eq!(report.widened_resources("ses:SendRawEmail"), sending);
    assert_eq!(
        report.widened_resources("ssm:GetParameter"),
        vec![s.parameter_arn.clone()]
    );
}

/// Encrypted mail and the template's policy without its KMS grants (what it grants with
/// `KmsKeyArn` empty; moto cannot take away one of the two kms:Decrypt grants and see the other
/// refuse): the invocation fails reading the raw mail, with KMS's refusal, and nothing is sent.
#[tokio::test]
async fn without_kms_decrypt_encrypted_mail_fails_the_invocation_unsent() {
    let s = setup(true).await;
    let policy = iam::policy("ForwardFunction", &s.world_without_key());
    assert!(
        policy.grants.iter().all(|g| !g.action.starts_with("kms:")),
        "{:?}",
        policy.grants
    );
    let full = policy.principals.first().expect("the full policy's user");
    let err = s.forward_as(full.config()).await.expect_err("refused");
    eprintln!("without kms:Decrypt: {err}");
    assert!(err.starts_with("reading raw message"), "{err}");
    assert!(
        err.contains("KMS") && (err.contains("AccessDenied") || err.contains("access denied")),
        "{err}"
    );
    let sent = mailroom_testkit::iam::s3(&iam::server().admin())
        .list_objects_v2()
        .bucket(&s.bucket)
        .prefix(format!("forwarded/{ID}/"))
        .send()
        .await
        .expect("list");
    assert_eq!(
        sent.key_count(),
        Some(0),
        "no marker and no claim: nothing sent"
    );
}
