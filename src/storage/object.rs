//! Object-store buckets as stores: Google Cloud Storage (`gs://bucket[/prefix]`) and
//! S3-compatible endpoints (logs only), through `object_store`, with bounded timeouts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt;

use super::local::{compress, compress_to_memory, io_error};
use super::s3_acl::S3PublicRead;
use super::source::Source;
use super::{S3_LOG_BUCKET, StorageError};

/// How long one object upload may take (the Python stores' five minutes).
const OBJECT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long connecting to the store may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An object store bucket, with the key prefix every object goes under.
#[derive(Debug, Clone)]
pub struct ObjectBackend {
    /// The bucket's client.
    pub store: Arc<dyn ObjectStore>,
    /// Path segments before `<codebase>/<run_id>/...` (S3 logs: `logs`).
    pub prefix: Vec<String>,
    /// The configured location, for messages.
    pub location: String,
    /// S3 only: makes each uploaded object public-read, as the Python runner's uploads are.
    pub public_read: Option<S3PublicRead>,
}

fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_timeout(OBJECT_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT)
}

impl ObjectBackend {
    /// `gs://bucket[/prefix]`: `rest` is what follows `gs://`. Credentials come from the
    /// usual Google variables.
    pub(super) fn gcs(location: &str, rest: &str) -> Result<Self, StorageError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::Unsupported {
                location: location.to_string(),
                reason: "a gs:// location needs a bucket name".into(),
            });
        }
        let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(client_options())
            .build()
            .map_err(|source| StorageError::Object {
                location: location.to_string(),
                source,
            })?;
        Ok(Self {
            store: Arc::new(store),
            prefix: prefix
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            location: location.to_string(),
            public_read: None,
        })
    }

    /// An S3-compatible endpoint URL: bucket `debian-janitor`, keys under `logs/`, each
    /// object made public-read; credentials from the usual `AWS_*` variables.
    pub(super) fn s3(location: &str) -> Result<Self, StorageError> {
        let unsupported = |reason: String| StorageError::Unsupported {
            location: location.to_string(),
            reason,
        };
        let url = url::Url::parse(location)
            .map_err(|e| unsupported(format!("not a valid S3 endpoint URL: {e}")))?;
        // Client options first: they replace the whole set, `allow_http` included.
        let builder = object_store::aws::AmazonS3Builder::from_env()
            .with_client_options(client_options())
            .with_endpoint(location.trim_end_matches('/'))
            .with_bucket_name(S3_LOG_BUCKET)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(url.scheme() == "http");
        let region = builder
            .get_config_value(&object_store::aws::AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let store = builder.build().map_err(|source| StorageError::Object {
            location: location.to_string(),
            source,
        })?;
        let public_read = S3PublicRead {
            client: reqwest::Client::builder()
                .timeout(OBJECT_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| unsupported(format!("cannot set up the HTTP client: {e}")))?,
            bucket_url: format!("{}/{S3_LOG_BUCKET}", location.trim_end_matches('/')),
            region,
            credentials: store.credentials().clone(),
        };
        Ok(Self {
            store: Arc::new(store),
            prefix: vec!["logs".to_string()],
            location: location.to_string(),
            public_read: Some(public_read),
        })
    }

    /// Compresses `source` and uploads it as `<codebase>/<run_id>/<name>.gz`. A store that
    /// refuses to replace an existing log gets it under `<name>.<UTC time>` instead, as the
    /// Python runner does. A log in memory is compressed in memory; one on disk through a
    /// temporary file, however large it is.
    pub(super) async fn import_log(
        &self,
        codebase: &str,
        run_id: &str,
        source: &Source,
        name: &str,
        mtime: u32,
    ) -> Result<(), StorageError> {
        // A temporary file for a log on disk, removed when this returns.
        let mut temporary = None;
        let compressed = match source {
            Source::Memory(_) => {
                Source::Memory(compress_to_memory(source.clone(), mtime).await?.into())
            }
            Source::File(_) => {
                let path = tempfile::NamedTempFile::new()
                    .map_err(io_error(&std::env::temp_dir()))?
                    .into_temp_path();
                compress(source.clone(), path.to_path_buf(), mtime).await?;
                let compressed = Source::File(path.to_path_buf());
                temporary = Some(path);
                compressed
            }
        };
        let key = self.key(&[codebase, run_id, &format!("{name}.gz")]);
        let stored = match self.upload(&key, &compressed).await {
            Err(error) if error.is_refused_overwrite() => {
                let suffix = crate::clock::Clock::now(&crate::clock::SystemClock)
                    .format("%Y-%m-%dT%H:%M:%S");
                tracing::warn!(%error, "log exists; storing it under a new name");
                let key = self.key(&[codebase, run_id, &format!("{name}.{suffix}.gz")]);
                self.upload(&key, &compressed).await
            }
            other => other,
        };
        drop(temporary);
        stored
    }

    /// Uploads the named files as `<run_id>/<name>`, all at once.
    pub(super) async fn store_artifacts(
        &self,
        run_id: &str,
        files: &[(String, Source)],
    ) -> Result<(), StorageError> {
        let mut uploads = Vec::with_capacity(files.len());
        for (name, source) in files {
            let key = self.key(&[run_id, name]);
            uploads.push(async move { self.upload(&key, source).await });
        }
        futures::future::try_join_all(uploads).await.map(|_| ())
    }

    /// Uploads an already-compressed log file as it is.
    pub(super) async fn put_compressed_log(
        &self,
        codebase: &str,
        run_id: &str,
        file_name: &str,
        source: &Path,
    ) -> Result<(), StorageError> {
        self.upload(
            &self.key(&[codebase, run_id, file_name]),
            &Source::File(source.to_path_buf()),
        )
        .await
    }

    fn key(&self, parts: &[&str]) -> ObjectPath {
        ObjectPath::from_iter(
            self.prefix
                .iter()
                .map(String::as_str)
                .chain(parts.iter().copied()),
        )
    }

    /// Streams content into an object (one request when small, a multipart upload otherwise).
    async fn upload(&self, key: &ObjectPath, source: &Source) -> Result<(), StorageError> {
        let object_error = |error: std::io::Error| {
            // BufWriter wraps the store's error in an io::Error; unwrap it so callers can
            // tell a refused overwrite from an outage.
            match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<object_store::Error>())
            {
                Some(_) => match error
                    .into_inner()
                    .map(<dyn std::error::Error + Send + Sync>::downcast::<object_store::Error>)
                {
                    Some(Ok(source)) => StorageError::Object {
                        location: format!("{}/{key}", self.location.trim_end_matches('/')),
                        source: *source,
                    },
                    _ => StorageError::Unsupported {
                        location: key.to_string(),
                        reason: "upload failed".into(),
                    },
                },
                None => StorageError::Io {
                    path: source.describe(key.as_ref()),
                    source: error,
                },
            }
        };
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), key.clone());
        let copied = match source {
            Source::Memory(bytes) => writer.write_all(bytes).await,
            Source::File(path) => {
                let mut file = tokio::fs::File::open(path).await.map_err(io_error(path))?;
                tokio::io::copy(&mut file, &mut writer).await.map(|_| ())
            }
        };
        if let Err(error) = copied {
            writer.abort().await.ok();
            return Err(object_error(error));
        }
        writer.shutdown().await.map_err(object_error)?;
        match &self.public_read {
            Some(public_read) => public_read.apply(key).await,
            None => Ok(()),
        }
    }
}
