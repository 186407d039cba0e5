//! The finish upload: a multipart body streamed part by part into a temporary directory.
//! Every 400 happens before anything is stored.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use tokio::io::AsyncWriteExt;

use super::error::ApiError;
use crate::finish::{Upload, check_upload_filename};

/// Reads the parts: `result.json` (by filename) is the worker result, every other part a file.
pub async fn receive<S: Send + Sync>(request: Request, state: &S) -> Result<Upload, ApiError> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| {
            ApiError::bad_request(format!(
                "expected a multipart body: {}",
                rejection.body_text()
            ))
        })?;
    let dir = tempfile::Builder::new()
        .prefix("janitor-runner-upload-")
        .tempdir()
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot create a temporary directory: {e}"),
            )
        })?;
    let mut filenames = Vec::new();
    let mut result = None;
    let read_error = |error: axum::extract::multipart::MultipartError| {
        let status = error.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "upload too large")
        } else if connection_broke(&error) {
            ApiError::connection_reset(format!("cannot read upload: {}", error.body_text()))
        } else {
            ApiError::bad_request(format!("cannot read upload: {}", error.body_text()))
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(read_error)? {
        if field
            .content_type()
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/"))
        {
            return Err(ApiError::bad_request("nested multi-part"));
        }
        let Some(name) = field.file_name().map(str::to_string) else {
            return Err(ApiError::bad_request("Part without filename"));
        };
        if name == "result.json" {
            let bytes = field.bytes().await.map_err(read_error)?;
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(format!("result.json is not valid JSON: {e}"))
            })?;
            super::extract::refuse_nul(&value, "result.json")?;
            result = Some(value);
            continue;
        }
        check_upload_filename(&name).map_err(ApiError::from)?;
        let path = dir.path().join(&name);
        let mut file = tokio::fs::File::create(&path).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot store {name}: {e}"),
            )
        })?;
        while let Some(chunk) = field.chunk().await.map_err(read_error)? {
            file.write_all(&chunk).await.map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot store {name}: {e}"),
                )
            })?;
        }
        file.flush().await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot store {name}: {e}"),
            )
        })?;
        filenames.push(name);
    }
    let result = result.ok_or_else(|| ApiError::bad_request("Missing result JSON"))?;
    Ok(Upload {
        dir,
        filenames,
        result,
    })
}

/// Whether reading the body failed because the client's connection broke (reset, closed
/// before the message was complete), rather than because of what it sent.
fn connection_broke(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_closed())
        {
            return true;
        }
        cause = error.source();
    }
    false
}
