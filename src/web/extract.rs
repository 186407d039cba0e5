//! Request extractors whose failures are JSON reasons, not axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

use super::error::ApiError;

/// A JSON body of any shape. The Content-Type is not checked, as in the Python runner.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "request body too large")
            } else {
                ApiError::new(
                    status,
                    format!("cannot read request body: {}", rejection.body_text()),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "request body is empty; expected JSON",
            ));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))?;
        refuse_nul(&value, "request body")?;
        Ok(JsonBody(value))
    }
}

/// PostgreSQL stores neither a NUL byte in text nor `\u0000` in jsonb, so a JSON document
/// carrying one could be accepted and then fail when it is written (a finish would fail after
/// its logs were stored). Refused up front, with the 400 every other bad body gets.
pub(super) fn refuse_nul(value: &Value, what: &str) -> Result<(), ApiError> {
    if has_nul(value) {
        return Err(nul_error(what));
    }
    Ok(())
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => object_has_nul(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn object_has_nul(map: &serde_json::Map<String, Value>) -> bool {
    map.iter()
        .any(|(key, value)| key.contains('\0') || has_nul(value))
}

fn nul_error(what: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{what}: a JSON string contains a NUL character (\\u0000), which cannot be stored"
    ))
}

/// A JSON object body, where an empty body counts as `{}`.
#[derive(Debug)]
pub struct OptionalJsonObject(pub serde_json::Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(serde_json::Map::new()));
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(obj)) if object_has_nul(&obj) => Err(nul_error("request body")),
            Ok(Value::Object(obj)) => Ok(Self(obj)),
            Ok(_) => Err(ApiError::bad_request("expected a JSON object")),
            Err(error) => Err(ApiError::bad_request(format!("invalid JSON body: {error}"))),
        }
    }
}

/// A JSON object body.
#[derive(Debug)]
pub struct JsonObject(pub serde_json::Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match JsonBody::from_request(req, state).await?.0 {
            Value::Object(obj) => Ok(Self(obj)),
            _ => Err(ApiError::bad_request("expected a JSON object")),
        }
    }
}

/// The login of the worker whose HTTP Basic credentials the request carries, checked before
/// anything else is read; otherwise a 401 asking for Basic credentials (the Python's realm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedWorker(pub String);

impl axum::extract::FromRequestParts<crate::app::SharedState> for AuthenticatedWorker {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::app::SharedState,
    ) -> Result<Self, Self::Rejection> {
        use axum::http::{HeaderValue, header};
        use axum::response::IntoResponse;
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        match crate::worker_auth::authenticate(&state.pool, authorization).await {
            Ok(Ok(login)) => Ok(Self(login)),
            Ok(Err(error)) => {
                let mut response =
                    ApiError::new(StatusCode::UNAUTHORIZED, error.to_string()).into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic Realm=\"Janitor\""),
                );
                Err(response)
            }
            Err(error) => Err(ApiError::from(error).into_response()),
        }
    }
}
