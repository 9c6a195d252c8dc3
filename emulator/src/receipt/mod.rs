//! The SES receipt rule engine, pure: the rule-set model, recipient matching, what SES adds to a
//! message (messageId, prepended headers, the `ses.mail` object) and the evaluation of a rule
//! set with every side effect behind an [`Executor`], and the IP address filters SES applies
//! before any of that. The local emulator (`mailroom deliver`, `mailroom serve`) is built on it.

pub mod engine;
pub mod filters;
pub mod mail;
pub mod model;
pub mod recipients;

pub use engine::{
    ActionTrace, Executor, Inbound, Outcome, RuleTrace, Status, Step, Trace, evaluate,
};
pub use filters::{Cidr, CidrError, FilterDecision, IpFilter, Policy};
pub use mail::{Envelope, Verdicts, new_message_id};
pub use model::{Action, InvocationType, Rule, RuleSet, RuleSetError, SnsEncoding, TlsPolicy};

#[cfg(test)]
mod tests;
