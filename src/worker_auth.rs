//! Worker credentials for the public app: HTTP Basic, checked against `worker.password`
//! (a crypt() hash) in the database.

use base64::Engine;
use sqlx::PgPool;

use crate::error::Result;

/// Why a request is not authenticated. Every case is a 401 for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("worker login required")]
    Missing,
    /// An `Authorization` header that is not well-formed Basic credentials.
    #[error("worker login required: only Basic credentials are accepted")]
    Malformed,
    /// Unknown worker or wrong password: the same answer as no credentials, as in Python.
    #[error("worker login required")]
    Invalid,
}

/// Splits a Basic `Authorization` header value into login and password.
pub fn parse_basic(header: &str) -> Result<(String, String), AuthError> {
    let (scheme, encoded) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AuthError::Malformed)?;
    // HTTP Basic is latin-1 by default; every byte is one character.
    let text: String = match String::from_utf8(decoded.clone()) {
        Ok(text) => text,
        Err(_) => decoded.iter().map(|&b| char::from(b)).collect(),
    };
    let (login, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
    Ok((login.to_string(), password.to_string()))
}

/// The worker's login if the header carries valid credentials.
pub async fn authenticate(
    pool: &PgPool,
    header: Option<&str>,
) -> Result<Result<String, AuthError>> {
    let Some(header) = header else {
        return Ok(Err(AuthError::Missing));
    };
    let (login, password) = match parse_basic(header) {
        Ok(pair) => pair,
        Err(error) => return Ok(Err(error)),
    };
    Ok(
        if crate::db::workers::password_matches(pool, &login, &password).await? {
            Ok(login)
        } else {
            Err(AuthError::Invalid)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers() {
        assert_eq!(
            parse_basic("Basic d29ya2VyOnMzY3I6dA=="),
            Ok(("worker".to_string(), "s3cr:t".to_string()))
        );
        assert_eq!(parse_basic("Bearer abc"), Err(AuthError::Malformed));
        assert_eq!(parse_basic("Basic !!!"), Err(AuthError::Malformed));
        assert_eq!(parse_basic("Basic bm9jb2xvbg=="), Err(AuthError::Malformed));
        assert_eq!(parse_basic("Basic"), Err(AuthError::Malformed));
    }
}
