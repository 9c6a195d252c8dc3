//! The activate-ruleset custom resource with exactly the IAM policy template.yaml gives it, on a
//! moto server that enforces IAM: it must activate and deactivate a rule set with that policy,
//! and fail without either of its actions.

use mailroom_activate_ruleset::{RuleSets, SesRuleSets};
use mailroom_testkit::iam::{self, World};

#[tokio::test]
async fn activate_ruleset_needs_exactly_its_template_policy() {
    let srv = iam::server();
    let name = mailroom_testkit::unique("mailroom-rs");
    aws_sdk_ses::Client::new(&srv.admin())
        .create_receipt_rule_set()
        .rule_set_name(&name)
        .send()
        .await
        .expect("create rule set");
    let report = iam::least_privilege("ActivateRuleSetFunction", &World::new(), |conf| {
        let name = &name;
        async move {
            let adapter = SesRuleSets::new(aws_sdk_ses::Client::new(&conf));
            adapter
                .set_active(Some(name.as_str()))
                .await
                .map_err(|e| e.to_string())?;
            let active = adapter.active().await.map_err(|e| e.to_string())?;
            if active.as_deref() != Some(name.as_str()) {
                return Err(format!("{active:?} active after activating {name}"));
            }
            adapter.set_active(None).await.map_err(|e| e.to_string())
        }
    })
    .await;
    report.assert_exercised_except(&[]);
    // Neither action supports resource-level permissions, so "*" is the only correct resource.
    assert_eq!(
        report.widened_resources("ses:SetActiveReceiptRuleSet"),
        vec!["*".to_string()]
    );
}
