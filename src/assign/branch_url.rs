//! Breezy "segment parameters": `https://host/repo,branch=feature%2Fx` names branch
//! `feature/x` of `https://host/repo`.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// A URL whose segment parameters cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid branch URL {url:?}: {reason}")]
pub struct BranchUrlError {
    /// The URL, or the escaped text, that could not be read.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// What breezy's `escape` leaves alone: alphanumerics, `-._~` and `/`.
const BREEZY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Splits a URL into its base and the `key=value` parameters of its last path segment.
pub fn split_segment_parameters(
    url: &str,
) -> Result<(String, BTreeMap<String, String>), BranchUrlError> {
    let stripped = strip_trailing_slash(url);
    let last_slash = stripped.rfind('/').map_or(0, |i| i + 1);
    let Some(comma) = stripped[last_slash..].find(',').map(|i| i + last_slash) else {
        return Ok((url.to_string(), BTreeMap::new()));
    };
    let mut parameters = BTreeMap::new();
    for part in stripped[comma + 1..].split(',') {
        let (key, value) = part.split_once('=').ok_or(BranchUrlError {
            url: url.to_string(),
            reason: "segment parameter without '='",
        })?;
        parameters.insert(key.to_string(), value.to_string());
    }
    Ok((stripped[..comma].to_string(), parameters))
}

/// Adds `branch=<escaped name>` to a URL's segment parameters.
pub fn with_branch(url: &str, branch: &str) -> Result<String, BranchUrlError> {
    let (base, mut parameters) = split_segment_parameters(url)?;
    parameters.insert("branch".to_string(), escape(branch));
    let mut out = base;
    for (key, value) in parameters {
        out.push(',');
        out.push_str(&key);
        out.push('=');
        out.push_str(&value);
    }
    Ok(out)
}

/// Percent-encodes a segment parameter value as breezy's `escape` does.
pub fn escape(text: &str) -> String {
    utf8_percent_encode(text, BREEZY_ESCAPE).to_string()
}

/// Decodes a percent-encoded segment parameter value, which must be UTF-8.
pub fn unescape(text: &str) -> Result<String, BranchUrlError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| BranchUrlError {
            url: text.to_string(),
            reason: "percent-encoding is not UTF-8",
        })
}

/// Drops one trailing `/`, except the one that only separates host from an empty path.
fn strip_trailing_slash(url: &str) -> &str {
    let Some(without) = url.strip_suffix('/') else {
        return url;
    };
    match url.find("://") {
        None => without,
        Some(scheme_end) => {
            let path_start = url[scheme_end + 3..].find('/').map(|i| i + scheme_end + 3);
            match path_start {
                Some(start) if start != url.len() - 1 => without,
                _ => url,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_branch_parameter() {
        let (base, params) =
            split_segment_parameters("https://git.example.com/repo,branch=feature%2Fx").unwrap();
        assert_eq!(base, "https://git.example.com/repo");
        assert_eq!(unescape(&params["branch"]).unwrap(), "feature/x");
        let (base, params) = split_segment_parameters("https://example.com/a,b=c/d").unwrap();
        assert_eq!(base, "https://example.com/a,b=c/d");
        assert!(params.is_empty());
        let (base, _) = split_segment_parameters("https://example.com/repo/").unwrap();
        assert_eq!(base, "https://example.com/repo/");
        let (base, params) =
            split_segment_parameters("https://example.com/repo,branch=x/").unwrap();
        assert_eq!(
            (base.as_str(), params["branch"].as_str()),
            ("https://example.com/repo", "x")
        );
        assert!(split_segment_parameters("https://example.com/repo,oops").is_err());
    }

    #[test]
    fn joins_branch_parameter() {
        assert_eq!(
            with_branch("https://example.com/repo", "debian/main ,x~").unwrap(),
            "https://example.com/repo,branch=debian/main%20%2Cx~"
        );
        assert_eq!(
            with_branch("https://example.com/repo,a=1", "b").unwrap(),
            "https://example.com/repo,a=1,branch=b"
        );
    }
}
