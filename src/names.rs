//! The `codebase_name`, `suite_name` and `campaign_name` domains.

/// `SIMILAR TO '[a-z0-9][a-z0-9+-.]+'`: the bracket holds the range `+`..`.`, so `,` passes.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let rest = chars.as_str();
    (first.is_ascii_lowercase() || first.is_ascii_digit())
        && !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ('+'..='.').contains(&c))
}

/// The labels of the `queue_bucket` enum, most urgent first.
pub const QUEUE_BUCKETS: [&str; 8] = [
    "update-existing-mp",
    "manual",
    "control",
    "hook",
    "reschedule",
    "update-new-mp",
    "missing-deps",
    "default",
];

/// The labels of the `publish_status` enum.
pub const PUBLISH_STATUSES: [&str; 6] = [
    "unknown",
    "blocked",
    "needs-manual-review",
    "rejected",
    "approved",
    "ignored",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names() {
        for ok in ["ab", "lintian-fixes", "a.b+c,d", "0ad", "python3.11"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "Ab", "-ab", "a_b", "aB", "a b", "a/b", "é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
