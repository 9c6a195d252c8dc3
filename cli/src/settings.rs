//! The emulator's options as `deliver` and `serve` take them on the command line.

use std::path::PathBuf;

/// Options shared by `deliver` and `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Which rule set, when the template has several (logical id or name).
    #[arg(long, value_name = "NAME")]
    pub rule_set: Option<String>,
    /// Where local S3, SNS, SQS and bounces are kept.
    #[arg(long, default_value = ".mailroom", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// A verdict for every message (repeatable): `spam=FAIL`, `dmarc=FAIL`, `dmarc-policy=reject`.
    #[arg(long = "verdict", value_name = "NAME=VALUE")]
    pub verdicts: Vec<String>,
    /// Use real AWS (or the endpoint in AWS_ENDPOINT_URL) instead of local folders.
    #[arg(long)]
    pub aws: bool,
    /// Deliver the api function's webhooks to the local sink (recorded in
    /// <state-dir>/webhooks/) whatever the URL. Reserved example hosts (example.com, .net, .org
    /// and their subdomains, *.example, *.test, *.invalid) always go there.
    #[arg(long)]
    pub webhook_sink: bool,
}

/// Which template, and its parameter overrides.
#[derive(Debug, Clone, clap::Args)]
pub struct TemplateArgs {
    /// The SAM template whose receipt rule set is emulated.
    #[arg(long, default_value = "template.yaml", value_name = "FILE")]
    pub template: PathBuf,
    /// Overrides a template parameter (repeatable), e.g. `--param Recipients=example.com`.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
    pub params: Vec<(String, String)>,
}

impl From<EmulatorArgs> for mailroom_emulator::Settings {
    fn from(a: EmulatorArgs) -> Self {
        mailroom_emulator::Settings {
            template: a.template.template,
            params: a.template.params,
            rule_set: a.rule_set,
            state_dir: a.state_dir,
            verdicts: a.verdicts,
            aws: a.aws,
            webhook_sink: a.webhook_sink,
        }
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}
