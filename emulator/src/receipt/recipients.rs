//! Recipient conditions: does a rule's entry take an envelope recipient? (docs/ses.md §5.3)
//!
//! Confirmed by AWS: an entry is an address, a domain, or a leading-dot domain that takes every
//! subdomain; an address entry `user@d` also takes labelled forms `user+label@d`.
//!
//! Our choices where SES is unconfirmed, each the reading that accepts less mail by surprise:
//! - a bare domain does not take its subdomains, and `.example.com` does not take
//!   `example.com` itself (list both to get both);
//! - an entry that carries a label (`user+x@d`) takes only that exact label;
//! - matching ignores ASCII case in both the local part and the domain (SMTP practice), and a
//!   trailing dot on a domain;
//! - a recipient without `@`, or with an empty local part or domain, matches nothing.

/// Whether the rule entry `condition` takes `recipient`.
pub fn matches(condition: &str, recipient: &str) -> bool {
    let condition = condition.trim().to_ascii_lowercase();
    let recipient = recipient.trim().to_ascii_lowercase();
    if condition.is_empty() {
        return false;
    }
    let Some((local, domain)) = split(&recipient) else {
        return false;
    };
    if let Some((c_local, c_domain)) = split(&condition) {
        if c_domain != domain {
            return false;
        }
        if c_local == local {
            return true;
        }
        // `user@d` takes `user+label@d`; an entry with its own label takes only that label.
        !c_local.contains('+')
            && local
                .split_once('+')
                .is_some_and(|(base, _label)| base == c_local)
    } else if let Some(parent) = condition.strip_prefix('.') {
        let parent = parent.trim_end_matches('.');
        !parent.is_empty()
            && domain.len() > parent.len() + 1
            && domain.ends_with(parent)
            && domain.as_bytes()[domain.len() - parent.len() - 1] == b'.'
    } else {
        condition.trim_end_matches('.') == domain
    }
}

/// `local@domain` with the domain's trailing dot dropped; `None` when either part is empty.
fn split(address: &str) -> Option<(&str, &str)> {
    let (local, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    (!local.is_empty() && !domain.is_empty()).then_some((local, domain))
}

/// The domain part of an address, lowercased, if it has one.
pub fn domain_of(address: &str) -> Option<String> {
    split(address.trim()).map(|(_, d)| d.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn address_entries() {
        assert!(matches("user@example.com", "user@example.com"));
        assert!(matches("user@example.com", "USER@Example.COM"));
        assert!(matches("User@Example.com", "user@example.com"));
        assert!(matches("user@example.com", "user+news@example.com"));
        assert!(matches("user@example.com", "user+@example.com"));
        assert!(!matches("user@example.com", "user2@example.com"));
        assert!(!matches("user@example.com", "other+user@example.com"));
        assert!(!matches("user@example.com", "user@sub.example.com"));
        assert!(!matches("user@example.com", "user@example.org"));
        // Documented choice: a labelled entry takes only its own label.
        assert!(matches("user+a@example.com", "user+a@example.com"));
        assert!(!matches("user+a@example.com", "user+b@example.com"));
        assert!(!matches("user+a@example.com", "user@example.com"));
    }

    #[test]
    fn domain_entries() {
        assert!(matches("example.com", "anyone@example.com"));
        assert!(matches("example.com", "a+b@EXAMPLE.com"));
        assert!(matches("example.com", "a@example.com."));
        // Documented choice: a bare domain does not take subdomains.
        assert!(!matches("example.com", "a@sub.example.com"));
        assert!(!matches("example.com", "a@badexample.com"));
        assert!(!matches("example.com", "a@example.com.evil.net"));
    }

    #[test]
    fn leading_dot_entries() {
        assert!(matches(".example.com", "a@sub.example.com"));
        assert!(matches(".example.com", "a@deep.sub.example.com"));
        assert!(matches(".Example.com", "a@SUB.example.com"));
        // Documented choice: the parent itself needs its own entry.
        assert!(!matches(".example.com", "a@example.com"));
        assert!(!matches(".example.com", "a@badexample.com"));
        assert!(!matches(".example.com", "a@xexample.com"));
        assert!(!matches(".", "a@example.com"));
    }

    #[test]
    fn junk_never_matches_by_accident() {
        assert!(!matches("", "a@example.com"));
        assert!(!matches("example.com", "example.com"));
        assert!(!matches("example.com", "@example.com"));
        assert!(!matches("@example.com", "a@example.com"));
        assert!(!matches("postmaster", "postmaster"));
    }
}
