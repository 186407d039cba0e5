//! Environment variables that make every VCS tool commit as the configured committer.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

// breezy's parse_username: an unanchored search, name lazily up to an optional `<email>`.
static USERNAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(.*?)\s*<?([\[\]\w+.-]+@[\w+.-]+)>?").expect("static regex compiles")
});

/// Splits `Name <email>` into its parts; text without an address is all name.
pub fn parse_username(committer: &str) -> (String, String) {
    match USERNAME.captures(committer) {
        Some(caps) => (
            caps.get(1).map_or("", |m| m.as_str()).to_string(),
            caps.get(2).map_or("", |m| m.as_str()).to_string(),
        ),
        None => (committer.to_string(), String::new()),
    }
}

/// The environment for a committer: name and address variables for Debian tools, git and
/// breezy. `None` gives an empty map.
pub fn committer_env(committer: Option<&str>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(committer) = committer else {
        return env;
    };
    let (name, email) = parse_username(committer);
    if !name.is_empty() {
        for key in ["DEBFULLNAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_NAME"] {
            env.insert(key.to_string(), name.clone());
        }
    }
    if !email.is_empty() {
        for key in [
            "DEBEMAIL",
            "GIT_COMMITTER_EMAIL",
            "GIT_AUTHOR_EMAIL",
            "EMAIL",
        ] {
            env.insert(key.to_string(), email.clone());
        }
    }
    env.insert("COMMITTER".to_string(), committer.to_string());
    env.insert("BRZ_EMAIL".to_string(), committer.to_string());
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(env: &BTreeMap<String, String>) -> Vec<&str> {
        env.keys().map(String::as_str).collect()
    }

    #[test]
    fn full_committer() {
        let env = committer_env(Some("Joe Example <joe@example.com>"));
        assert_eq!(env.len(), 9);
        assert_eq!(env["DEBFULLNAME"], "Joe Example");
        assert_eq!(env["GIT_AUTHOR_EMAIL"], "joe@example.com");
        assert_eq!(env["EMAIL"], "joe@example.com");
        assert_eq!(env["COMMITTER"], "Joe Example <joe@example.com>");
        assert_eq!(env["BRZ_EMAIL"], "Joe Example <joe@example.com>");
    }

    #[test]
    fn partial_committers() {
        let env = committer_env(Some("John Doe"));
        assert_eq!(
            keys(&env),
            [
                "BRZ_EMAIL",
                "COMMITTER",
                "DEBFULLNAME",
                "GIT_AUTHOR_NAME",
                "GIT_COMMITTER_NAME"
            ]
        );
        let env = committer_env(Some("joe@example.com"));
        assert_eq!(
            keys(&env),
            [
                "BRZ_EMAIL",
                "COMMITTER",
                "DEBEMAIL",
                "EMAIL",
                "GIT_AUTHOR_EMAIL",
                "GIT_COMMITTER_EMAIL"
            ]
        );
        let env = committer_env(Some("Joe <joe>"));
        assert_eq!(env["DEBFULLNAME"], "Joe <joe>");
        assert!(!env.contains_key("EMAIL"));
        let env = committer_env(Some("Joe <joe@example.com> extra"));
        assert_eq!(
            (env["DEBFULLNAME"].as_str(), env["EMAIL"].as_str()),
            ("Joe", "joe@example.com")
        );
        let env = committer_env(Some(""));
        assert_eq!(keys(&env), ["BRZ_EMAIL", "COMMITTER"]);
        assert!(committer_env(None).is_empty());
    }
}
