//! A small S3 client: requests signed by `rusty-s3` (sans-IO, presigned URLs) and sent with
//! `reqwest`, bodies streamed. Only what the scale-out store needs: objects, ranges, listings
//! by prefix and multipart uploads. It relies on nothing conditional (Garage ignores
//! `If-Match` on writes): every decision is PostgreSQL's.

use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, DeleteObjects,
    ListObjectsV2, ObjectIdentifier,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::body::{BoxError, ByteStream};
use crate::storage::{StorageError, StorageResult};

/// How long a signed URL stays valid: only for the request it is made for.
const SIGNED_FOR: Duration = Duration::from_secs(600);
/// How long a request may take to connect and to send its headers back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any one request may stall without progress.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the blobs are: `s3://BUCKET?endpoint=URL&region=R` (and `&style=virtual` for
/// virtual-host URLs; path style by default, as Garage and MinIO serve).
#[derive(Debug, Clone)]
pub struct S3Url {
    pub bucket: String,
    pub endpoint: url::Url,
    pub region: String,
    pub virtual_host: bool,
}

impl S3Url {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("--blobs {raw:?}: {why} (expected s3://BUCKET?endpoint=URL&region=REGION)")
        };
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "s3" {
            return Err(bad("the scheme must be s3"));
        }
        let bucket = url.host_str().unwrap_or_default().to_string();
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(bad("a bucket takes no path"));
        }
        let (mut endpoint, mut region, mut virtual_host) = (None, None, false);
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => endpoint = Some(v.into_owned()),
                "region" => region = Some(v.into_owned()),
                "style" if v == "virtual" => virtual_host = true,
                "style" if v == "path" => virtual_host = false,
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        let endpoint = endpoint.ok_or_else(|| bad("no endpoint"))?;
        let endpoint = url::Url::parse(&endpoint).map_err(|e| bad(&format!("endpoint: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(bad("the endpoint must be an http(s) URL"));
        }
        Ok(S3Url {
            bucket,
            endpoint,
            region: region.unwrap_or_else(|| "us-east-1".into()),
            virtual_host,
        })
    }
}

/// The access key pair: from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, or from a file in
/// the AWS shared-credentials format (`[default]`, `aws_access_key_id = ...`).
pub fn credentials(file: Option<&std::path::Path>) -> Result<Credentials, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        return parse_credentials_file(&text, &profile)
            .ok_or_else(|| format!("{}: no access key pair for profile [{profile}] (aws_access_key_id, aws_secret_access_key)", path.display()));
    }
    match (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Ok(k), Ok(s)) if !k.is_empty() && !s.is_empty() => Ok(Credentials::new(k, s)),
        _ => Err("--blobs needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --blobs-credentials FILE".into()),
    }
}

fn parse_credentials_file(text: &str, profile: &str) -> Option<Credentials> {
    let (mut in_profile, mut key, mut secret) = (false, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            in_profile = line[1..line.len() - 1].trim() == profile;
        } else if let Some((k, v)) = line.split_once('=') {
            if in_profile {
                match k.trim() {
                    "aws_access_key_id" => key = Some(v.trim().to_string()),
                    "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
    }
    Some(Credentials::new(key?, secret?))
}

/// An object found by a listing.
pub struct Listed {
    pub key: String,
}

#[derive(Clone)]
pub struct S3 {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

/// An S3 failure. Unreachable, or a 5xx, is "unavailable" (503 for the client).
fn transport(e: reqwest::Error) -> StorageError {
    StorageError::unavailable(format!("S3: {e}"))
}

async fn status_error(what: &str, resp: reqwest::Response) -> StorageError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    // S3's error body names the code; keep it short for the log.
    let code = body
        .split("<Code>")
        .nth(1)
        .and_then(|r| r.split("</Code>").next())
        .unwrap_or("")
        .to_string();
    let msg = format!("S3 {what}: {status} {code}");
    if status.is_server_error() {
        StorageError::unavailable(msg)
    } else {
        StorageError(msg)
    }
}

impl S3 {
    pub fn new(url: &S3Url, credentials: Credentials) -> Result<Self, String> {
        let style = if url.virtual_host {
            UrlStyle::VirtualHost
        } else {
            UrlStyle::Path
        };
        let bucket = Bucket::new(
            url.endpoint.clone(),
            style,
            url.bucket.clone(),
            url.region.clone(),
        )
        .map_err(|e| format!("--blobs: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("an HTTP client for S3: {e}"))?;
        Ok(S3 {
            bucket,
            credentials,
            http,
        })
    }

    /// [`S3::new`] with an access key pair.
    pub fn with_keys(url: &S3Url, key: &str, secret: &str) -> Result<Self, String> {
        Self::new(url, Credentials::new(key, secret))
    }

    fn creds(&self) -> Option<&Credentials> {
        Some(&self.credentials)
    }

    /// Checks at start that the bucket is there and the credentials may use it: one clear
    /// error otherwise.
    pub async fn check(&self) -> Result<(), String> {
        let url = self.bucket.head_bucket(self.creds()).sign(SIGNED_FOR);
        let resp =
            self.http.head(url).send().await.map_err(|e| {
                format!("S3 endpoint {} is unreachable: {e}", self.bucket.base_url())
            })?;
        match resp.status().as_u16() {
            200..=299 => {}
            404 => return Err(format!("S3 bucket {:?} does not exist", self.bucket.name())),
            401 | 403 => {
                return Err(format!(
                    "S3 refused the credentials for bucket {:?} ({})",
                    self.bucket.name(),
                    resp.status()
                ))
            }
            _ => {
                return Err(format!(
                    "S3 bucket {:?}: {}",
                    self.bucket.name(),
                    resp.status()
                ))
            }
        }
        // A HEAD carries no body to say why; a listing proves reads are allowed too.
        self.list(".edge-registry-check/", 1)
            .await
            .map_err(|e| format!("S3 bucket {:?}: {e}", self.bucket.name()))?;
        Ok(())
    }

    /// The whole of a (small) object, or `None`.
    pub async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        let url = self.bucket.get_object(self.creds(), key).sign(SIGNED_FOR);
        let resp = self.http.get(url).send().await.map_err(transport)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error("GET", resp).await);
        }
        Ok(Some(resp.bytes().await.map_err(transport)?))
    }

    /// `len` bytes (at least 1) of an object from `start`, streamed; `None` when it is gone.
    pub async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<ByteStream>> {
        let url = self.bucket.get_object(self.creds(), key).sign(SIGNED_FOR);
        let range = format!("bytes={start}-{}", start + len - 1);
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::RANGE, range)
            .send()
            .await
            .map_err(transport)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error("GET", resp).await);
        }
        if resp.content_length().is_some_and(|l| l != len) {
            return Err(StorageError(format!(
                "S3 GET {key}: {} bytes, expected {len}",
                resp.content_length().unwrap_or(0)
            )));
        }
        Ok(Some(Box::pin(resp.bytes_stream().map_err(|e| {
            Box::new(std::io::Error::other(e.to_string())) as BoxError
        }))))
    }

    pub async fn put(&self, key: &str, data: Bytes) -> StorageResult<()> {
        let url = self.bucket.put_object(self.creds(), key).sign(SIGNED_FOR);
        let resp = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, data.len())
            .body(data)
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", resp).await);
        }
        Ok(())
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> StorageResult<bool> {
        let url = self.bucket.head_object(self.creds(), key).sign(SIGNED_FOR);
        let resp = self.http.head(url).send().await.map_err(transport)?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error("HEAD", resp).await),
        }
    }

    /// Deletes an object; deleting one that is not there is not an error.
    pub async fn delete(&self, key: &str) -> StorageResult<()> {
        let url = self
            .bucket
            .delete_object(self.creds(), key)
            .sign(SIGNED_FOR);
        let resp = self.http.delete(url).send().await.map_err(transport)?;
        if !resp.status().is_success() && resp.status() != reqwest::StatusCode::NOT_FOUND {
            return Err(status_error("DELETE", resp).await);
        }
        Ok(())
    }

    /// Deletes many objects, 1,000 per request.
    pub async fn delete_many(&self, keys: &[String]) -> StorageResult<()> {
        for chunk in keys.chunks(1000) {
            if let [one] = chunk {
                self.delete(one).await?;
                continue;
            }
            let objects: Vec<ObjectIdentifier> = chunk
                .iter()
                .map(|k| ObjectIdentifier::new(k.clone()))
                .collect();
            let mut action = DeleteObjects::new(&self.bucket, self.creds(), objects.iter());
            action.set_quiet(true);
            let url = action.sign(SIGNED_FOR);
            let (body, md5) = action.body_with_md5();
            let resp = self
                .http
                .post(url)
                .header("content-md5", md5)
                .body(body)
                .send()
                .await
                .map_err(transport)?;
            if !resp.status().is_success() {
                return Err(status_error("DeleteObjects", resp).await);
            }
            let text = resp.text().await.map_err(transport)?;
            if text.contains("<Error>") {
                return Err(StorageError(format!(
                    "S3 DeleteObjects: some objects were not deleted: {}",
                    text.chars().take(300).collect::<String>()
                )));
            }
        }
        Ok(())
    }

    /// Up to `max` objects under `prefix` (`max` 0: all of them).
    pub async fn list(&self, prefix: &str, max: usize) -> StorageResult<Vec<Listed>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, self.creds());
            action.with_prefix(prefix);
            if max > 0 {
                action.with_max_keys(max.min(1000));
            }
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let resp = self.http.get(url).send().await.map_err(transport)?;
            if !resp.status().is_success() {
                return Err(status_error("ListObjectsV2", resp).await);
            }
            let text = resp.text().await.map_err(transport)?;
            let page = ListObjectsV2::parse_response(&text)
                .map_err(|e| StorageError(format!("S3 ListObjectsV2: {e}")))?;
            found.extend(page.contents.into_iter().map(|c| Listed { key: c.key }));
            token = page.next_continuation_token;
            if token.is_none() || (max > 0 && found.len() >= max) {
                return Ok(found);
            }
        }
    }

    /// Starts a multipart upload of `key`; returns its id.
    pub async fn create_multipart(&self, key: &str) -> StorageResult<String> {
        let url = CreateMultipartUpload::new(&self.bucket, self.creds(), key).sign(SIGNED_FOR);
        let resp = self.http.post(url).send().await.map_err(transport)?;
        if !resp.status().is_success() {
            return Err(status_error("CreateMultipartUpload", resp).await);
        }
        let text = resp.text().await.map_err(transport)?;
        let parsed = CreateMultipartUpload::parse_response(&text)
            .map_err(|e| StorageError(format!("S3 CreateMultipartUpload: {e}")))?;
        Ok(parsed.upload_id().to_string())
    }

    /// Uploads part `number` (from 1); returns its etag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        data: Bytes,
    ) -> StorageResult<String> {
        let url = self
            .bucket
            .upload_part(self.creds(), key, number, upload_id)
            .sign(SIGNED_FOR);
        let resp = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, data.len())
            .body(data)
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(status_error("UploadPart", resp).await);
        }
        resp.headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| StorageError("S3 UploadPart: no ETag".into()))
    }

    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> StorageResult<()> {
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            self.creds(),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let resp = self
            .http
            .post(url)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(status_error("CompleteMultipartUpload", resp).await);
        }
        // S3 may answer 200 with an error in the body.
        let text = resp.text().await.map_err(transport)?;
        if text.contains("<Error>") {
            return Err(StorageError(format!(
                "S3 CompleteMultipartUpload: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        Ok(())
    }

    /// Aborts a multipart upload; one that is gone (completed or aborted) is not an error.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> StorageResult<()> {
        let url =
            AbortMultipartUpload::new(&self.bucket, self.creds(), key, upload_id).sign(SIGNED_FOR);
        let resp = self.http.delete(url).send().await.map_err(transport)?;
        if !resp.status().is_success() && resp.status() != reqwest::StatusCode::NOT_FOUND {
            return Err(status_error("AbortMultipartUpload", resp).await);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = S3Url::parse("s3://reg?endpoint=http://127.0.0.1:3900&region=garage").unwrap();
        assert_eq!(u.bucket, "reg");
        assert_eq!(u.region, "garage");
        assert_eq!(u.endpoint.as_str(), "http://127.0.0.1:3900/");
        for bad in [
            "http://reg?endpoint=http://x",
            "s3://reg",
            "s3://reg?endpoint=ftp://x",
            "s3://?endpoint=http://x",
            "s3://reg/path?endpoint=http://x",
            "s3://reg?endpoint=http://x&colour=red",
            "not a url",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_file() {
        let text = "[other]\naws_access_key_id = A\naws_secret_access_key = B\n\n[default]\naws_access_key_id=K\naws_secret_access_key = S\n";
        let c = parse_credentials_file(text, "default").unwrap();
        assert_eq!((c.key(), c.secret()), ("K", "S"));
        let c = parse_credentials_file(text, "other").unwrap();
        assert_eq!(c.key(), "A");
        assert!(parse_credentials_file(text, "missing").is_none());
    }
}
