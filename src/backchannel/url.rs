//! Worker URLs: path segments appended to the backchannel's base URL.
//!
//! The Python runner builds them with yarl's `/` operator: one `/` between the base and each
//! segment whether or not the base ends in `/`, each segment percent-encoded, query and
//! fragment dropped. `Url::join` would instead replace the last segment of a base without a
//! trailing slash (`http://h/worker` + `log-id` → `http://h/log-id`), so it is not used.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What yarl leaves as it is in a path segment: RFC 3986 unreserved characters, the
/// sub-delimiters that are not query syntax, and `@` and `:`. Everything else is escaped,
/// `%` included, so a name reaches the worker exactly as given.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b'@')
    .remove(b':');

/// Why a worker URL cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The backchannel's base URL is not an absolute `http`/`https` URL.
    #[error("backchannel URL {0:?} is not an absolute http(s) URL")]
    InvalidBase(String),
    /// `.`, `..` and empty segments would be resolved away by URL normalisation.
    #[error("{0:?} is not a valid path segment")]
    InvalidSegment(String),
}

/// `base` with `segments` appended, each percent-encoded.
pub fn child_url(base: &str, segments: &[&str]) -> Result<reqwest::Url, UrlError> {
    let mut url = reqwest::Url::parse(base).map_err(|_| UrlError::InvalidBase(base.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(UrlError::InvalidBase(base.to_string()));
    }
    let mut path = url.path().trim_end_matches('/').to_string();
    for segment in segments {
        if segment.is_empty() || *segment == "." || *segment == ".." {
            return Err(UrlError::InvalidSegment((*segment).to_string()));
        }
        path.push('/');
        path.extend(utf8_percent_encode(segment, SEGMENT));
    }
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(base: &str, segments: &[&str]) -> String {
        child_url(base, segments).unwrap().to_string()
    }

    #[test]
    fn one_separator_with_or_without_trailing_slash() {
        assert_eq!(child("http://h:8080/", &["log-id"]), "http://h:8080/log-id");
        assert_eq!(child("http://h:8080", &["log-id"]), "http://h:8080/log-id");
        assert_eq!(
            child("http://h/worker", &["log-id"]),
            "http://h/worker/log-id"
        );
        assert_eq!(
            child("http://h/worker/", &["log-id"]),
            "http://h/worker/log-id"
        );
        assert_eq!(
            child("https://ci/job/x/12/", &["logText", "progressiveText"]),
            "https://ci/job/x/12/logText/progressiveText"
        );
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            child("http://h/", &["logs", "build log.txt"]),
            "http://h/logs/build%20log.txt"
        );
        assert_eq!(
            child("http://h/", &["logs", "a/b?c#d%e+f&g=h;i"]),
            "http://h/logs/a%2Fb%3Fc%23d%25e%2Bf%26g%3Dh%3Bi"
        );
        assert_eq!(
            child("http://h/", &["logs", "ok-._~!$'()*,@:"]),
            "http://h/logs/ok-._~!$'()*,@:"
        );
        assert_eq!(child("http://h/", &["logs", "é"]), "http://h/logs/%C3%A9");
    }

    #[test]
    fn query_and_fragment_are_dropped() {
        assert_eq!(child("http://h/w?x=1#f", &["kill"]), "http://h/w/kill");
    }

    #[test]
    fn bad_bases_and_segments_are_refused() {
        assert!(matches!(
            child_url("not a url", &["x"]),
            Err(UrlError::InvalidBase(_))
        ));
        assert!(matches!(
            child_url("ftp://h/", &["x"]),
            Err(UrlError::InvalidBase(_))
        ));
        for bad in ["", ".", ".."] {
            assert!(matches!(
                child_url("http://h/", &["logs", bad]),
                Err(UrlError::InvalidSegment(_))
            ));
        }
    }
}
