//! The receipt inspector: what `mailroom serve` and `mailroom deliver` saw, kept and shown.
//!
//! - [`record`]: every SMTP transaction (accepted, refused at RCPT, bounced, stopped) with its
//!   trace, one folder each under the state dir, indexed in SQLite.
//! - [`query`]: Mailpit's search syntax plus receipt terms, compiled to SQL.
//! - [`web`]: the web inbox, its JSON API (with a long-poll for test suites) and live updates.
//! - [`mailpit`]: the Mailpit-compatible subset of the API.
//! - [`filter_policy`]: would an SNS subscription's filter policy take a publication?

pub mod filter_policy;
pub mod mailpit;
pub mod mime;
pub mod query;
pub mod record;
mod ui;
pub mod web;
pub mod webhooks;

pub use record::{Inbox, Record, Retention, Source};
pub use web::{Inspector, Shared};
