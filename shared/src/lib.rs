//! mailroom's domain crate: what two or more of the workspace's crates use.
//!
//! Each function under `functions/` owns its logic (its handler, its configuration, its own
//! rules); the emulator under `emulator/` owns the rule engine and the local adapters. What they
//! exchange lives here: the SES event, the email model, the S3 layout, the filter policy (stop
//! and bounce), webhook signing (api and the command line), and the ports every side effect sits
//! behind, with one real AWS adapter each.
//!
//! # Layout
//! - [`ses`]: the SES receipt event and the `disposition` answer, as SES really sends them.
//! - [`email`]: the MIME parser and the JSON model of an email every function shares.
//! - [`layout`] and [`keys`]: where mail lives in S3, and keys made safe from untrusted names;
//!   [`served`]: the headers an attachment is stored and served with; [`envelope`]: raw mail SES
//!   encrypted with KMS, decrypted as it is read.
//! - [`policy`]: the filter policy (verdicts, allow and deny lists, size) stop and bounce apply;
//!   [`automated`]: mail a machine sent, which bounce never answers and forward never passes on.
//! - [`webhook`]: Standard Webhooks signing, payload formats, the retry schedule.
//! - [`ports`]: the small traits behind every side effect; [`aws`]: their one real adapter each.
//! - [`config`]: typed configuration read once, errors that name the variable.
//! - [`diagnostic`]: one rule for how a function's error reaches the Lambda runtime.
//! - [`logging`]: structured JSON logs for the Lambda functions.

pub mod automated;
pub mod aws;
pub mod config;
pub mod diagnostic;
pub mod email;
pub mod envelope;
pub mod keys;
pub mod layout;
pub mod logging;
pub mod policy;
pub mod ports;
pub mod served;
pub mod ses;
pub mod webhook;

pub use email::{Email, Limits, ParseError, Parsed};
pub use ses::{Disposition, SesEvent, SesMail, SesReceipt, SesRecord, Verdict};
