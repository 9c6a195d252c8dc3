//! Search: Mailpit's syntax (`from:`, `to:`, `subject:`, `has:attachment`, `before:`, `after:`,
//! quoted phrases, `-` or `!` to negate, other words anywhere in the message) plus receipt terms
//! (`rule:`, `disposition:`, `verdict:spam=FAIL`, `webhook:failed`, `forward:sent`). Terms are
//! ANDed and case-insensitive. A query compiles to one SQL condition whose values are bound
//! parameters, never spliced into the statement.

use time::OffsetDateTime;
use time::macros::format_description;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("{term}: not a date (use 2025-01-31, or 2025-01-31T10:00:00Z)")]
    BadDate { term: String },
    #[error("has:{0}: unknown (has:attachment is known)")]
    UnknownHas(String),
    #[error("verdict:{0}: expected verdict:NAME=VALUE, e.g. verdict:spam=FAIL")]
    BadVerdict(String),
    #[error("query is {0} bytes, over 1024")]
    TooLong(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Text(String),
    From(String),
    To(String),
    Subject(String),
    HasAttachment,
    Before(i64),
    After(i64),
    Rule(String),
    Disposition(String),
    Verdict(String),
    Webhook(String),
    Forward(String),
}

/// A parsed search: every term must hold (or, negated, must not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    terms: Vec<(bool, Term)>,
}

impl Query {
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        if input.len() > 1024 {
            return Err(QueryError::TooLong(input.len()));
        }
        let mut terms = Vec::new();
        for word in words(input) {
            let (negated, word) = match word.strip_prefix(['-', '!']) {
                Some(rest) if !rest.is_empty() => (true, rest.to_string()),
                _ => (false, word),
            };
            if let Some(term) = term(&word)? {
                terms.push((negated, term));
            }
        }
        Ok(Query { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The SQL condition over the `messages` table and its bound values.
    pub fn to_sql(&self) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let mut clauses = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let like = |s: &str| Value::Text(format!("%{}%", escape_like(&s.to_lowercase())));
        for (negated, term) in &self.terms {
            let clause = match term {
                Term::Text(s) => {
                    args.push(like(s));
                    "search LIKE ? ESCAPE '\\'".to_string()
                }
                Term::From(s) => {
                    args.push(like(s));
                    args.push(like(s));
                    "(from_addr LIKE ? ESCAPE '\\' OR mail_from LIKE ? ESCAPE '\\')".to_string()
                }
                Term::To(s) => {
                    args.push(like(s));
                    "recipients LIKE ? ESCAPE '\\'".to_string()
                }
                Term::Subject(s) => {
                    args.push(like(s));
                    "subject LIKE ? ESCAPE '\\'".to_string()
                }
                Term::HasAttachment => "attachments > 0".to_string(),
                Term::Before(ms) => {
                    args.push(Value::Integer(*ms));
                    "received_ms < ?".to_string()
                }
                Term::After(ms) => {
                    args.push(Value::Integer(*ms));
                    "received_ms >= ?".to_string()
                }
                Term::Rule(s) => {
                    args.push(Value::Text(format!(
                        "%\n{}\n%",
                        escape_like(&s.to_lowercase())
                    )));
                    "rules LIKE ? ESCAPE '\\'".to_string()
                }
                Term::Disposition(s) => {
                    args.push(Value::Text(s.to_lowercase()));
                    "disposition = ?".to_string()
                }
                Term::Verdict(s) => {
                    args.push(Value::Text(format!(
                        "% {} %",
                        escape_like(&s.to_lowercase())
                    )));
                    "verdicts LIKE ? ESCAPE '\\'".to_string()
                }
                Term::Webhook(s) => {
                    args.push(Value::Text(s.to_lowercase()));
                    "webhook = ?".to_string()
                }
                Term::Forward(s) => {
                    args.push(Value::Text(s.to_lowercase()));
                    "forward = ?".to_string()
                }
            };
            clauses.push(if *negated {
                format!("NOT ({clause})")
            } else {
                clause
            });
        }
        if clauses.is_empty() {
            ("1".to_string(), args)
        } else {
            (clauses.join(" AND "), args)
        }
    }
}

/// Splits on spaces outside double quotes; quotes group and are dropped (`subject:"a b"`).
fn words(input: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in input.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out.retain(|w| !w.is_empty());
    out
}

fn term(word: &str) -> Result<Option<Term>, QueryError> {
    let Some((key, value)) = word.split_once(':') else {
        return Ok(Some(Term::Text(word.to_string())));
    };
    let v = value.to_string();
    Ok(Some(match key.to_ascii_lowercase().as_str() {
        "from" => Term::From(v),
        "to" => Term::To(v),
        "subject" => Term::Subject(v),
        "has" => match value.to_ascii_lowercase().as_str() {
            "attachment" | "attachments" => Term::HasAttachment,
            _ => return Err(QueryError::UnknownHas(v)),
        },
        "before" => Term::Before(date(word, value)?),
        "after" => Term::After(date(word, value)?),
        "rule" => Term::Rule(v),
        "disposition" => Term::Disposition(v),
        "verdict" => {
            let Some((name, result)) = value.split_once('=') else {
                return Err(QueryError::BadVerdict(v));
            };
            if name.is_empty() || result.is_empty() {
                return Err(QueryError::BadVerdict(v));
            }
            Term::Verdict(format!("{name}={result}"))
        }
        "webhook" => Term::Webhook(v),
        "forward" => Term::Forward(v),
        // Anything else (a URL, `re:`) is text to find.
        _ => Term::Text(word.to_string()),
    }))
}

/// Milliseconds since the epoch of a date (midnight UTC) or an RFC 3339 time.
fn date(term: &str, value: &str) -> Result<i64, QueryError> {
    let bad = || QueryError::BadDate {
        term: term.to_string(),
    };
    let t = if let Ok(t) =
        OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
    {
        t
    } else {
        let d = time::Date::parse(value, format_description!("[year]-[month]-[day]"))
            .map_err(|_| bad())?;
        d.midnight().assume_utc()
    };
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mailpit_terms_and_receipt_terms_parse() {
        let q = Query::parse(
            r#"from:carla subject:"the invoice" -has:attachment after:2025-01-02 rule:receive verdict:spam=FAIL webhook:failed forward:sent disposition:bounced hello"#,
        )
        .unwrap();
        assert_eq!(
            q.terms,
            vec![
                (false, Term::From("carla".into())),
                (false, Term::Subject("the invoice".into())),
                (true, Term::HasAttachment),
                (false, Term::After(1_735_776_000_000)),
                (false, Term::Rule("receive".into())),
                (false, Term::Verdict("spam=FAIL".into())),
                (false, Term::Webhook("failed".into())),
                (false, Term::Forward("sent".into())),
                (false, Term::Disposition("bounced".into())),
                (false, Term::Text("hello".into())),
            ]
        );
    }

    #[test]
    fn bad_terms_are_typed_errors() {
        assert!(matches!(
            Query::parse("before:yesterday"),
            Err(QueryError::BadDate { .. })
        ));
        assert_eq!(
            Query::parse("has:wings"),
            Err(QueryError::UnknownHas("wings".into()))
        );
        assert_eq!(
            Query::parse("verdict:spam"),
            Err(QueryError::BadVerdict("spam".into()))
        );
        assert!(matches!(
            Query::parse(&"x".repeat(2000)),
            Err(QueryError::TooLong(2000))
        ));
    }

    #[test]
    fn like_wildcards_in_a_term_are_literal() {
        let (sql, args) = Query::parse("50%_off").unwrap().to_sql();
        assert_eq!(sql, "search LIKE ? ESCAPE '\\'");
        assert_eq!(
            args,
            vec![rusqlite::types::Value::Text("%50\\%\\_off%".into())]
        );
    }

    #[test]
    fn an_empty_query_matches_everything() {
        assert_eq!(Query::parse("  ").unwrap().to_sql().0, "1");
    }
}
