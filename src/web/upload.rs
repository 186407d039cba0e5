//! The finish upload: a multipart body read part by part, small files into memory and the rest
//! into a temporary directory (`finish::upload`). Every 400 happens before anything is stored.

use std::collections::BTreeMap;

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::error::ApiError;
use crate::finish::upload::Reservation;
use crate::finish::{Upload, UploadMemory, check_upload_filename};
use crate::storage::Source;

/// Reads the parts: `result.json` (by filename) is the worker result, every other part a file.
pub async fn receive<S: Send + Sync>(
    request: Request,
    state: &S,
    memory: &UploadMemory,
) -> Result<Upload, ApiError> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| {
            ApiError::bad_request(format!(
                "expected a multipart body: {}",
                rejection.body_text()
            ))
        })?;
    let mut received = Received {
        filenames: Vec::new(),
        files: BTreeMap::new(),
        spill: None,
        reservation: memory.reservation(),
    };
    let mut result = None;
    while let Some(mut field) = multipart.next_field().await.map_err(|e| read_error(&e))? {
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
            let bytes = field.bytes().await.map_err(|e| read_error(&e))?;
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(format!("result.json is not valid JSON: {e}"))
            })?;
            super::extract::refuse_nul(&value, "result.json")?;
            result = Some(value);
            continue;
        }
        check_upload_filename(&name).map_err(ApiError::from)?;
        // Of parts with the same name only the last is kept: the earlier one's memory goes
        // back before the next is read.
        if let Some(Source::Memory(replaced)) = received.files.remove(&name) {
            received.reservation.shrink(replaced.len());
        }
        let source = received.read_part(&name, &mut field).await?;
        received.files.insert(name.clone(), source);
        received.filenames.push(name);
    }
    let result = result.ok_or_else(|| ApiError::bad_request("Missing result JSON"))?;
    Ok(Upload {
        filenames: received.filenames,
        files: received.files,
        spill: received.spill,
        result,
        reservation: received.reservation,
    })
}

/// The files read so far.
struct Received {
    filenames: Vec<String>,
    files: BTreeMap<String, Source>,
    spill: Option<tempfile::TempDir>,
    reservation: Reservation,
}

impl Received {
    /// One file part: in memory while the reservation grows with it, otherwise on disk.
    async fn read_part(&mut self, name: &str, field: &mut Field<'_>) -> Result<Source, ApiError> {
        let mut buffer = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| read_error(&e))? {
            if !self.reservation.grow(chunk.len()) {
                self.reservation.shrink(buffer.len());
                return self.spill_part(name, buffer.freeze(), chunk, field).await;
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(Source::Memory(buffer.freeze()))
    }

    /// Writes what was read of a part, then the rest of it, to the temporary directory.
    async fn spill_part(
        &mut self,
        name: &str,
        head: Bytes,
        next: Bytes,
        field: &mut Field<'_>,
    ) -> Result<Source, ApiError> {
        let store_error = |e: std::io::Error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot store {name}: {e}"),
            )
        };
        let dir = match &self.spill {
            Some(dir) => dir.path().to_path_buf(),
            None => {
                let created = tokio::task::spawn_blocking(|| {
                    tempfile::Builder::new()
                        .prefix("janitor-runner-upload-")
                        .tempdir()
                })
                .await
                .map_err(|e| store_error(std::io::Error::other(e)))?
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot create a temporary directory: {e}"),
                    )
                })?;
                self.spill.insert(created).path().to_path_buf()
            }
        };
        let path = dir.join(name);
        let file = tokio::fs::File::create(&path).await.map_err(store_error)?;
        let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        file.write_all(&head).await.map_err(store_error)?;
        file.write_all(&next).await.map_err(store_error)?;
        while let Some(chunk) = field.chunk().await.map_err(|e| read_error(&e))? {
            file.write_all(&chunk).await.map_err(store_error)?;
        }
        file.flush().await.map_err(store_error)?;
        Ok(Source::File(path))
    }
}

fn read_error(error: &MultipartError) -> ApiError {
    let status = error.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "upload too large")
    } else if connection_broke(error) {
        ApiError::connection_reset(format!("cannot read upload: {}", error.body_text()))
    } else {
        ApiError::bad_request(format!("cannot read upload: {}", error.body_text()))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, content: &[u8]) -> Vec<u8> {
        let mut part = format!(
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
        )
        .into_bytes();
        part.extend_from_slice(content);
        part.extend_from_slice(b"\r\n");
        part
    }

    #[tokio::test]
    async fn a_repeated_part_gives_the_memory_of_the_one_it_replaces_back() {
        let three_mib = vec![b'x'; 3 * 1024 * 1024];
        let mut body = part("result.json", b"{}");
        body.extend(part("build.log", &three_mib));
        body.extend(part("build.log", &three_mib));
        body.extend_from_slice(b"--b--\r\n");
        let request = Request::builder()
            .header("content-type", "multipart/form-data; boundary=b")
            .body(axum::body::Body::from(body))
            .expect("request");
        let memory = UploadMemory::default();
        // As the finish routes do, lift axum's default 2 MB body limit.
        let read = tower::Layer::layer(
            &axum::extract::DefaultBodyLimit::disable(),
            tower::service_fn(|request: Request| {
                let memory = memory.clone();
                async move { receive(request, &(), &memory).await }
            }),
        );
        let upload = tower::ServiceExt::oneshot(read, request)
            .await
            .expect("received");
        // Both parts fit the 4 MiB kept per upload only because the first was given back.
        assert!(
            matches!(upload.files.get("build.log"), Some(Source::Memory(b)) if b.len() == three_mib.len())
        );
        assert!(upload.spill.is_none());
        assert_eq!(memory.used(), three_mib.len());
        assert_eq!(upload.filenames, ["build.log", "build.log"]);
        drop(upload);
        assert_eq!(memory.used(), 0);
    }
}
