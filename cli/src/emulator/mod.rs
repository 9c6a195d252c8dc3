//! The local SES receiving emulator: the receipt rule set from `template.yaml`, evaluated by
//! [`mailroom::receipt`], with our real function handlers run in process against local
//! adapters (a folder for S3, JSON lines for SNS and SQS, DSN files for SendBounce).

pub mod template;
