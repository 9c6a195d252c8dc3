//! mailroom's domain crate: everything the receipt-rule functions share.
//!
//! The functions under `functions/` are thin: they read configuration, build AWS clients once and
//! call into this crate. Pure logic lives here so it can be tested without AWS; AWS access sits
//! behind the small traits in [`ports`] with one real adapter each in [`aws`].

pub mod aws;
pub mod bounce;
pub mod config;
pub mod email;
pub mod fanout;
pub mod keys;
pub mod layout;
pub mod logging;
pub mod policy;
pub mod ports;
pub mod receipt;
pub mod ses;
pub mod webhook;

pub use email::{Email, Limits, ParseError, Parsed};
pub use ses::{Disposition, SesEvent, SesMail, SesReceipt, SesRecord, Verdict};
