//! Queue commands: POSIX shell words, optionally led by `VAR=value` assignments.

use std::collections::BTreeMap;

/// A command line that is not valid POSIX shell (e.g. an unclosed quote).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command is not valid shell syntax: {command:?}")]
pub struct CommandSyntaxError {
    /// The command as given.
    pub command: String,
}

/// Splits leading `VAR=value` words off a command. Returns the variables and the remaining
/// words re-joined with shell quoting (Python's `shlex.join`).
pub fn splitout_env(
    command: &str,
) -> Result<(BTreeMap<String, String>, String), CommandSyntaxError> {
    let words = shlex::split(command).ok_or_else(|| CommandSyntaxError {
        command: command.to_string(),
    })?;
    let mut env = BTreeMap::new();
    let mut rest = words.as_slice();
    while let Some((first, tail)) = rest.split_first() {
        let Some((key, value)) = first.split_once('=') else {
            break;
        };
        env.insert(key.to_string(), value.to_string());
        rest = tail;
    }
    Ok((env, join(rest)))
}

/// Python's `shlex.join`.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|word| quote(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `shlex.quote`: words made only of `[A-Za-z0-9_@%+=:,./-]` stay bare; anything else
/// is single-quoted, with embedded single quotes spelled `'"'"'`.
pub fn quote(word: &str) -> String {
    if word.is_empty() {
        return "''".to_string();
    }
    let safe = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_leading_assignments() {
        let (env, rest) = splitout_env("FOO=bar BAZ='a b' lintian-brush --fix 'x y'").unwrap();
        assert_eq!(env["FOO"], "bar");
        assert_eq!(env["BAZ"], "a b");
        assert_eq!(rest, "lintian-brush --fix 'x y'");
    }

    #[test]
    fn stops_at_first_plain_word() {
        let (env, rest) = splitout_env("run A=b").unwrap();
        assert!(env.is_empty());
        assert_eq!(rest, "run A=b");
        let (env, rest) = splitout_env("A=b=c").unwrap();
        assert_eq!(env["A"], "b=c");
        assert_eq!(rest, "");
    }

    #[test]
    fn python_quoting() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a/b-c.d:e,f@g%h+i=j_k"), "a/b-c.d:e,f@g%h+i=j_k");
        assert_eq!(quote("it's"), "'it'\"'\"'s'");
        assert_eq!(quote("--revision=a b"), "'--revision=a b'");
        assert_eq!(quote("é"), "'é'");
    }

    #[test]
    fn rejects_unbalanced_quotes() {
        assert!(splitout_env("echo 'oops").is_err());
    }
}
