//! The SES adapter over the wire against moto: activate, read back, deactivate.

use mailroom_activate_ruleset::{RuleSets, SesRuleSets};
use mailroom_testkit as kit;

#[tokio::test]
async fn activates_reads_back_and_deactivates_over_the_wire() {
    let ses = kit::ses();
    let name = kit::unique("mailroom-rs");
    ses.create_receipt_rule_set()
        .rule_set_name(&name)
        .send()
        .await
        .expect("create rule set on moto");
    let adapter = SesRuleSets::new(ses.clone());

    adapter.set_active(Some(&name)).await.expect("activate");
    assert_eq!(
        adapter.active().await.expect("describe").as_deref(),
        Some(name.as_str())
    );

    adapter.set_active(None).await.expect("deactivate");
    assert_eq!(adapter.active().await.expect("describe"), None);
}

#[tokio::test]
async fn activating_an_unknown_set_is_a_permanent_error() {
    let adapter = SesRuleSets::new(kit::ses());
    let err = adapter
        .set_active(Some(&kit::unique("missing-set")))
        .await
        .expect_err("unknown rule set");
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.operation, "ses:SetActiveReceiptRuleSet");
}
