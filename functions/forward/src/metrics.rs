//! Counters for what must never pass unnoticed (a permanent rejection, a loop), as a port: in
//! Lambda each count is a CloudWatch embedded-metric-format line on standard output, which
//! CloudWatch turns into the metric `mailroom/<name>` with the dimension `Function`; the emulator
//! puts the count in its trace instead.

/// The namespace of every metric the function emits.
pub const NAMESPACE: &str = "mailroom";

pub trait Metrics: Send + Sync {
    fn count(&self, name: &'static str, value: u64);
}

/// CloudWatch embedded metric format, one JSON line per count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Emf;

impl Emf {
    /// The line for one count at `millis` since the epoch.
    pub fn line(name: &str, value: u64, millis: u128) -> String {
        let mut line = serde_json::json!({
            "_aws": {
                "Timestamp": millis,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": [{"Name": name, "Unit": "Count"}],
                }],
            },
            "Function": "forward",
        });
        line[name] = value.into();
        line.to_string()
    }
}

impl Metrics for Emf {
    fn count(&self, name: &'static str, value: u64) {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        println!("{}", Emf::line(name, value, millis));
    }
}

/// Metric names.
pub const REJECTED: &str = "ForwardRejected";
pub const LOOP: &str = "ForwardLoop";
/// Mail SES could not vouch for, held instead of forwarded (`MAILROOM_FORWARD_UNVERIFIED=hold`).
pub const HELD: &str = "ForwardHeld";
pub const FORWARDED: &str = "Forwarded";
/// Sent as a digest (text and a note) because the whole message could not go.
pub const PARTIAL: &str = "ForwardPartial";
pub const FALLBACK: &str = "ForwardAttachedFallback";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_names_the_metric_and_its_value() {
        let v: serde_json::Value =
            serde_json::from_str(&Emf::line(REJECTED, 1, 5)).unwrap_or_default();
        assert_eq!(v["ForwardRejected"], 1);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            REJECTED
        );
        assert_eq!(v["Function"], "forward");
    }
}
