//! `mailroom template env-vars` and `mailroom template show`: what the emulator's template reader
//! and the function crates know, as JSON, for checks written in other languages.
//!
//! - `env-vars`: `{"<binary>": ["MAILROOM_…", …]}`, every `MAILROOM_*` variable each function's
//!   crate reads (a template may set no other on that function);
//! - `show`: the template with every resource's `Properties` evaluated, whether a conditional
//!   resource is `Created`, and the `Outputs` the stack would show (`--param K=V` as for
//!   `deliver`; SES's Easy DKIM tokens are stand-ins, `local-dkim-token-N`).

use crate::settings::TemplateArgs;
use mailroom_emulator::{functions, template};
use std::collections::BTreeMap;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print, per function binary, the MAILROOM_* variables its crate reads (JSON).
    EnvVars,
    /// Print the template's resources and outputs with parameters, conditions and intrinsics
    /// evaluated (JSON).
    Show(TemplateArgs),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let json = match args.command {
        Command::EnvVars => {
            // Every function builds its SDK clients through `mailroom::aws`, which reads the
            // endpoint override: it is the one variable all of them share.
            let vars: BTreeMap<&str, Vec<&str>> = functions::FUNCTIONS
                .iter()
                .map(|(binary, vars)| {
                    let mut vars = vars();
                    vars.push(mailroom::aws::ENDPOINT_VAR);
                    (*binary, vars)
                })
                .collect();
            serde_json::to_value(vars)?
        }
        Command::Show(t) => {
            let options = template::Options {
                params: t.params.into_iter().collect(),
                ..template::Options::default()
            };
            template::show_file(&t.template, &options)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
