//! `mailroom`: the command line. One subcommand per module; each module exposes `Args` (clap) and
//! `run(Args) -> anyhow::Result<()>`, so adding a command is one enum variant and one match arm.
//! Any error is printed as one line on stderr with exit status 1; usage errors exit with 2.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod deliver;
mod inspect;
mod parse;
mod replay;
mod serve;
mod settings;
mod template;
mod verify_webhook;

#[derive(Debug, Parser)]
#[command(
    name = "mailroom",
    version,
    about = "Serverless inbound mail for Amazon SES"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a raw message (.eml) and print the mailroom JSON model.
    Parse(parse::Args),
    /// Run one message through the local SES receipt rule set and print what happened.
    Deliver(deliver::Args),
    /// Accept SMTP on 127.0.0.1:2525 and run each message through the local SES receipt rule set.
    Serve(serve::Args),
    /// Browse the inspector's record of a state dir (http://127.0.0.1:8025/), without SMTP.
    Inspect(inspect::Args),
    /// Re-drive the api function's dead-lettered webhook deliveries.
    Replay(replay::Args),
    /// Verify a Standard Webhooks signature (exit 0 when valid, 1 when not).
    VerifyWebhook(verify_webhook::Args),
    /// What the template reader and the function crates know, as JSON (for the template check).
    Template(template::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => parse::run(args),
        Command::Deliver(args) => deliver::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Replay(args) => replay::run(args),
        Command::VerifyWebhook(args) => verify_webhook::run(args),
        Command::Template(args) => template::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the error chain on one line: one line per failure, easy to grep.
            eprintln!("mailroom: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
