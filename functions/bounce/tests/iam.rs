//! The bounce function's SES call with exactly the IAM policy template.yaml gives it, on a moto
//! server that enforces IAM. moto authorizes `SendBounce` but does not implement it (it answers
//! 500 once the call is allowed), so what is checked here is IAM's answer: let through with the
//! policy, denied without its one grant; and the grant's resource is the identity of the domain
//! the template sends bounces from, which moto cannot check.

use mailroom::aws::SesBouncer;
use mailroom::ports::{BounceRequest, BounceType, BouncedRecipient, Bouncer, ErrorKind};
use mailroom_testkit::iam::{self, ACCOUNT, World};

#[tokio::test]
async fn bounce_needs_exactly_its_template_policy() {
    // The template's defaults: DomainName example.com, BounceSender mailer-daemon@<DomainName>.
    let request = BounceRequest {
        original_message_id: "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1".into(),
        bounce_sender: "mailer-daemon@example.com".into(),
        bounce_sender_arn: None,
        explanation: None,
        message_dsn: None,
        recipients: vec![BouncedRecipient {
            recipient: "ghost@example.com".into(),
            recipient_arn: None,
            bounce_type: Some(BounceType::DoesNotExist),
            dsn: None,
        }],
    };
    let report = iam::least_privilege("BounceFunction", &World::new(), |conf| {
        let request = &request;
        async move {
            let bouncer = SesBouncer::from_conf(&conf);
            match bouncer.send_bounce(request).await {
                Err(e) if e.kind == ErrorKind::AccessDenied => Err(e.to_string()),
                // Allowed: moto's unimplemented SendBounce then fails, or a future moto answers.
                _ => Ok(()),
            }
        }
    })
    .await;
    report.assert_exercised_except(&[]);
    assert_eq!(
        report.widened_resources("ses:SendBounce"),
        vec![format!(
            "arn:aws:ses:us-east-1:{ACCOUNT}:identity/example.com"
        )],
        "bounces are sent as the domain identity only"
    );
}
