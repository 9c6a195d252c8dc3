//! The forward function with exactly the IAM policy template.yaml gives it, on a moto server that
//! enforces IAM: with the map in an SSM parameter and a configuration set (the template's fullest
//! shape), it must forward a message and write its marker with that policy, and fail without any
//! one of its grants.
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

#[tokio::test]
async fn forward_needs_exactly_its_template_policy() {
    let srv = iam::server();
    let admin = srv.admin();
    let admin_s3 = iam::s3(&admin);
    let raw = mailroom_testkit::event_file("mail/forward/dkim-signatures.eml");
    let bucket = srv.bucket("forward-iam").await;
    S3Store::new(admin_s3.clone())
        .put_if_absent(
            &bucket,
            &format!("raw/{ID}"),
            Bytes::from(raw.clone()),
            &ObjectMeta::new("message/rfc822"),
        )
        .await
        .expect("put raw");
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
    ];
    let config = Config::from_env(env.as_slice()).expect("config");
    let event = common::event(
        ID,
        &raw,
        "bounces+x1@sender.example.net",
        &["info@example.com"],
        &[],
    );
    let marker = format!("forwarded/{ID}/me@gmail.com");

    let world = World::new()
        .bucket("RawMailBucket", &bucket)
        .resource("ForwardConfigurationSet", CONFIGURATION_SET)
        .param("DomainName", &domain)
        .param("ForwardMapParameter", PARAMETER);
    let report = iam::least_privilege("ForwardFunction", &world, |conf| {
        let (admin_s3, bucket, event, config, marker) =
            (&admin_s3, &bucket, &event, &config, &marker);
        async move {
            // Each run starts with the message not yet forwarded (no marker, no claim), and
            // reads the map afresh.
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
            let store = S3Store::new(iam::s3(&conf));
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
    })
    .await;
    report.assert_exercised_except(&[
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
    ]);
    // moto does not check SES or SSM resources: the template must name exactly what the
    // function is configured with.
    let sending = vec![
        format!("arn:aws:ses:us-east-1:{ACCOUNT}:identity/{domain}"),
        format!("arn:aws:ses:us-east-1:{ACCOUNT}:configuration-set/{CONFIGURATION_SET}"),
    ];
    assert_eq!(report.widened_resources("ses:SendEmail"), sending);
    assert_eq!(report.widened_resources("ses:SendRawEmail"), sending);
    assert_eq!(
        report.widened_resources("ssm:GetParameter"),
        vec![parameter_arn.clone()]
    );
}
