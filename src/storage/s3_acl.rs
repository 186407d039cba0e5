//! S3's `public-read` canned ACL: the Python site reads logs anonymously, and
//! `object_store` writes objects but has no ACL call.

use object_store::path::Path as ObjectPath;

use super::StorageError;

/// Sets the `public-read` canned ACL on S3 objects (`PUT <key>?acl`), signed with the store's
/// own credentials: the Python site reads logs anonymously. `object_store` writes objects but
/// has no ACL call.
#[derive(Debug, Clone)]
pub struct S3PublicRead {
    pub(super) client: reqwest::Client,
    pub(super) bucket_url: String,
    pub(super) region: String,
    pub(super) credentials: object_store::aws::AwsCredentialProvider,
}

/// What S3 leaves unescaped in a key path: unreserved characters and `/`.
const S3_KEY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl S3PublicRead {
    pub(super) async fn apply(&self, key: &ObjectPath) -> Result<(), StorageError> {
        let location = format!("{}/{key}", self.bucket_url);
        let failed = |reason: String| StorageError::Unsupported {
            location: location.clone(),
            reason,
        };
        let credential =
            self.credentials
                .get_credential()
                .await
                .map_err(|source| StorageError::Object {
                    location: location.clone(),
                    source,
                })?;
        let url = format!(
            "{}/{}?acl",
            self.bucket_url,
            percent_encoding::utf8_percent_encode(key.as_ref(), S3_KEY_ESCAPE)
        );
        let mut request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(&url)
            .header("x-amz-acl", "public-read")
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| failed(format!("cannot build the ACL request: {e}")))?;
        object_store::aws::AwsAuthorizer::new(&credential, "s3", &self.region)
            .authorize(&mut request, None);
        let mut signed = crate::telemetry::propagation::traced(self.client.put(&url));
        for (name, value) in request.headers() {
            signed = signed.header(name, value);
        }
        let response = signed
            .send()
            .await
            .map_err(|e| failed(format!("setting the public-read ACL: {e}")))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "setting the public-read ACL: HTTP {}",
                response.status()
            )));
        }
        Ok(())
    }
}
