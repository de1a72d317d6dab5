//! One S3-compatible bucket (and prefix) as a destination sees it, through `object_store`:
//! streamed multipart uploads with fixed-size parts, checks of what the store holds (ETag,
//! or a full read-back), sidecars, listing,
//! deletes, downloads and the probe behind the "test" button.
//!
//! Memory is bounded whatever the archive size: the file is read in [`READ_BUF`] pieces into
//! parts of [`PART_SIZE`], and at most [`PARTS_IN_FLIGHT`] parts are uploading at once, so a
//! copy holds about `(PARTS_IN_FLIGHT + 1) * PART_SIZE` (32 MiB) of archive bytes.
//!
//! Errors are told in words a person can act on ([`explain`]): DNS, TLS, connection,
//! credentials, bucket, permission. The secret never appears in them: `object_store` signs
//! in headers, and its messages name only the method and the URL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::{Error, ErrorKind, Result};
use wire::destination::{SIDECAR_FORMAT, Sidecar};

/// Size of every part but the last (S3 wants at least 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
/// Parts uploading at once.
pub const PARTS_IN_FLIGHT: usize = 3;
/// How much of the file is read at a time.
const READ_BUF: usize = 1 << 20;
/// A sidecar larger than this is not ours.
const SIDECAR_MAX: u64 = 64 << 10;

/// What a destination needs to reach its bucket. `Debug` never prints the secret.
#[derive(Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// A bucket and prefix, ready for requests.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<AmazonS3>,
    prefix: String,
    endpoint: String,
    bucket: String,
}

/// What an upload sent, and the ETag the store answered with.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub digest: Digest256,
    /// S3's multipart ETag of what was sent: `hex(md5(md5(part 1) .. md5(part N)))-N`.
    pub expected_etag: String,
    pub e_tag: Option<String>,
}

/// The MD5 of each [`PART_SIZE`] part of a stream, in order (how S3 stores see the parts).
#[derive(Default)]
struct PartMd5s {
    current: md5::Md5,
    in_part: usize,
    done: Vec<[u8; 16]>,
}

impl PartMd5s {
    fn update(&mut self, mut bytes: &[u8]) {
        use md5::Digest as _;
        while !bytes.is_empty() {
            let take = (PART_SIZE - self.in_part).min(bytes.len());
            self.current.update(&bytes[..take]);
            self.in_part += take;
            bytes = &bytes[take..];
            if self.in_part == PART_SIZE {
                self.done
                    .push(std::mem::take(&mut self.current).finalize().into());
                self.in_part = 0;
            }
        }
    }

    fn etag(mut self) -> String {
        use md5::Digest as _;
        if self.in_part > 0 || self.done.is_empty() {
            self.done.push(self.current.finalize().into());
        }
        let mut all = md5::Md5::new();
        for d in &self.done {
            all.update(d);
        }
        format!("{}-{}", hex::encode(all.finalize()), self.done.len())
    }
}

/// What was written or read: the byte count and the sha256 (hex) of those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest256 {
    pub size: u64,
    pub sha256: String,
}

impl Bucket {
    /// A client for `cfg`. `retry_for` bounds how long one request is retried.
    pub fn open(cfg: &S3Config, retry_for: Duration) -> Result<Bucket> {
        let allow_http = cfg.endpoint.starts_with("http://");
        let store = AmazonS3Builder::new()
            .with_endpoint(cfg.endpoint.trim_end_matches('/'))
            .with_region(&cfg.region)
            .with_bucket_name(&cfg.bucket)
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(&cfg.secret_access_key)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_retry(RetryConfig {
                max_retries: 10,
                retry_timeout: retry_for,
                ..Default::default()
            })
            .with_client_options(
                // (allow_http lives in the client options: set it here, or these
                // options would switch it back off.)
                ClientOptions::new()
                    .with_allow_http(allow_http)
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            )
            .build()
            .map_err(|e| {
                Error::invalid(format!("the S3 settings are not usable: {e}")).with_source(e)
            })?;
        Ok(Bucket {
            store: Arc::new(store),
            prefix: cfg.prefix.trim_matches('/').to_owned(),
            endpoint: cfg.endpoint.clone(),
            bucket: cfg.bucket.clone(),
        })
    }

    fn key(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    /// An error from `op` on `name`, in words.
    fn fail(&self, op: &str, e: object_store::Error) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            explain(op, &e, &self.endpoint, &self.bucket),
        )
    }

    /// Uploads `file` as `name` (multipart, fixed-size parts), hashing what it sends.
    /// `progress` gets the bytes sent so far. A cancel or a failure aborts the upload, so no
    /// part is left behind where the store supports aborting.
    pub async fn upload_file(
        &self,
        name: &str,
        file: &Path,
        cancel: &CancellationToken,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Uploaded> {
        let mut f = tokio::fs::File::open(file).await.map_err(|e| {
            Error::internal(format!("cannot read the archive {}", file.display()), e)
        })?;
        let upload = self
            .store
            .put_multipart(&self.key(name))
            .await
            .map_err(|e| self.fail("starting the upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut hasher = Sha256::new();
        let mut parts = PartMd5s::default();
        let mut buf = vec![0u8; READ_BUF];
        let mut sent = 0u64;
        let outcome: Result<()> = async {
            loop {
                let n = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(Error::canceled()),
                    n = f.read(&mut buf) => n.map_err(|e| Error::internal("cannot read the archive", e))?,
                };
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                parts.update(&buf[..n]);
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(Error::canceled()),
                    r = writer.wait_for_capacity(PARTS_IN_FLIGHT) => r.map_err(|e| self.fail("uploading", e))?,
                }
                writer.write(&buf[..n]);
                sent += n as u64;
                progress(sent);
            }
        }
        .await;
        if let Err(e) = outcome {
            let _ = writer.abort().await;
            return Err(e);
        }
        let put = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Error::canceled()),
            r = writer.finish() => r.map_err(|e| self.fail("finishing the upload", e))?,
        };
        Ok(Uploaded {
            digest: Digest256 {
                size: sent,
                sha256: hex::encode(hasher.finalize()),
            },
            expected_etag: parts.etag(),
            e_tag: put.e_tag.map(|t| t.trim_matches('"').to_owned()),
        })
    }

    /// Whether the store holds exactly what [`Bucket::upload_file`] sent, without reading
    /// it back: the object's size, and its ETag as the store computed it from the bytes it
    /// received (S3's multipart ETag, the MD5 of the parts' MD5s) equal to ours. `false`
    /// when the store's ETag follows another scheme (some providers, SSE-KMS): then only a
    /// read-back can tell.
    pub async fn holds(&self, name: &str, up: &Uploaded) -> Result<bool> {
        let meta = self
            .store
            .head(&self.key(name))
            .await
            .map_err(|e| self.fail("checking the copy", e))?;
        if meta.size != up.digest.size {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "the store holds {} bytes where {} were sent",
                    meta.size, up.digest.size
                ),
            ));
        }
        let held = meta.e_tag.as_deref().map(|t| t.trim_matches('"'));
        Ok(held == Some(up.expected_etag.as_str()) && up.e_tag.as_deref() == held)
    }

    /// Size and sha256 of what the store holds as `name`, read back in full.
    pub async fn read_back(
        &self,
        name: &str,
        cancel: &CancellationToken,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Digest256> {
        let mut stream = self.open_stream(name).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = self.next_chunk(&mut stream, cancel).await? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            progress(size);
        }
        Ok(Digest256 {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Downloads `name` into a new file `to` (flushed and fsynced), hashing it on the way.
    pub async fn download(
        &self,
        name: &str,
        to: &Path,
        cancel: &CancellationToken,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Digest256> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(|e| Error::internal(format!("cannot create {}", to.display()), e))?;
        let mut out =
            tokio::io::BufWriter::with_capacity(READ_BUF, tokio::fs::File::from_std(file));
        let mut stream = self.open_stream(name).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let write_err = |e| Error::internal(format!("cannot write {}", to.display()), e);
        while let Some(chunk) = self.next_chunk(&mut stream, cancel).await? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(write_err)?;
            progress(size);
        }
        out.flush().await.map_err(write_err)?;
        out.into_inner().sync_all().await.map_err(write_err)?;
        Ok(Digest256 {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    async fn open_stream(
        &self,
        name: &str,
    ) -> Result<futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>> {
        let got = self
            .store
            .get(&self.key(name))
            .await
            .map_err(|e| self.fail("reading the copy", e))?;
        Ok(got.into_stream())
    }

    async fn next_chunk(
        &self,
        stream: &mut futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
        cancel: &CancellationToken,
    ) -> Result<Option<bytes::Bytes>> {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Error::canceled()),
            n = stream.next() => n,
        };
        next.transpose()
            .map_err(|e| self.fail("reading the copy", e))
    }

    /// Writes `name`'s sidecar (`<name>.json`). Written last: it is what makes a copy listed.
    pub async fn put_sidecar(&self, sidecar: &Sidecar) -> Result<()> {
        let body = serde_json::to_vec_pretty(sidecar)
            .map_err(|e| Error::internal("cannot encode the sidecar", e))?;
        self.store
            .put(
                &self.key(&format!("{}.json", sidecar.name)),
                PutPayload::from(body),
            )
            .await
            .map_err(|e| self.fail("writing the sidecar", e))?;
        Ok(())
    }

    /// Every complete copy under the prefix: objects whose sidecar Backstop wrote and whose
    /// archive object exists, newest first. Anything else is not ours and is left alone.
    pub async fn list(&self) -> Result<Vec<Sidecar>> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let mut listing = self.store.list(prefix.as_ref());
        let mut objects = std::collections::HashMap::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.fail("listing", e))?;
            // Only direct children of the prefix.
            let Some(file) = meta.location.filename() else {
                continue;
            };
            if self.key(file) != meta.location {
                continue;
            }
            objects.insert(file.to_owned(), meta.size);
        }
        let mut out = Vec::new();
        for (file, size) in &objects {
            let Some(archive) = file.strip_suffix(".json") else {
                continue;
            };
            if *size > SIDECAR_MAX || !objects.contains_key(archive) {
                continue;
            }
            let Ok(sidecar) = self.read_sidecar(file).await else {
                continue;
            };
            if sidecar.format == SIDECAR_FORMAT
                && sidecar.name == archive
                && objects.get(archive) == Some(&sidecar.size_bytes)
            {
                out.push(sidecar);
            }
        }
        out.sort_by(|a, b| {
            (&b.created_at, &b.copied_at, &b.name).cmp(&(&a.created_at, &a.copied_at, &a.name))
        });
        Ok(out)
    }

    async fn read_sidecar(&self, file: &str) -> Result<Sidecar> {
        let got = self
            .store
            .get(&self.key(file))
            .await
            .map_err(|e| self.fail("reading a sidecar", e))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.fail("reading a sidecar", e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid("not a Backstop sidecar").with_source(e))
    }

    /// The sidecar of `name`, when it is a complete copy.
    pub async fn find(&self, name: &str) -> Result<Option<Sidecar>> {
        Ok(self.list().await?.into_iter().find(|s| s.name == name))
    }

    /// Deletes a copy: the sidecar first (so a half-deleted copy is never listed), then the
    /// archive object.
    pub async fn delete_copy(&self, name: &str) -> Result<()> {
        self.store
            .delete(&self.key(&format!("{name}.json")))
            .await
            .map_err(|e| self.fail("deleting a sidecar", e))?;
        self.store
            .delete(&self.key(name))
            .await
            .map_err(|e| self.fail("deleting an old copy", e))?;
        Ok(())
    }

    /// Writes, reads back and deletes a probe object; says which step failed and why.
    pub async fn probe(&self) -> std::result::Result<String, String> {
        let name = format!(".backstop-probe-{}", uuid::Uuid::new_v4());
        let key = self.key(&name);
        let body = format!("backstop probe {name}");
        self.store
            .put(&key, PutPayload::from(body.clone().into_bytes()))
            .await
            .map_err(|e| explain("writing a test object", &e, &self.endpoint, &self.bucket))?;
        let read = async {
            let got = self.store.get(&key).await?;
            got.bytes().await
        }
        .await;
        let deleted = self.store.delete(&key).await;
        match read {
            Err(e) => {
                return Err(explain(
                    "reading the test object back",
                    &e,
                    &self.endpoint,
                    &self.bucket,
                ));
            }
            Ok(b) if b.as_ref() != body.as_bytes() => {
                return Err("the store returned different bytes than were written".into());
            }
            Ok(_) => {}
        }
        deleted
            .map_err(|e| explain("deleting the test object", &e, &self.endpoint, &self.bucket))?;
        Ok(format!(
            "wrote, read back and deleted a test object in {} at {}",
            self.bucket, self.endpoint
        ))
    }
}

/// `op` failed with `e`: what went wrong, in words (DNS, TLS, connection, credentials, bucket,
/// permission), with the store's own code where it gave one.
pub fn explain(op: &str, e: &object_store::Error, endpoint: &str, bucket: &str) -> String {
    let mut chain = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        chain.push_str(&c.to_string());
        chain.push('\n');
        cur = c.source();
    }
    let lower = chain.to_lowercase();
    let has = |s: &str| lower.contains(s);
    let why = if has("dns error")
        || has("failed to lookup address")
        || has("name or service not known")
    {
        format!("DNS: the host of {endpoint} could not be resolved")
    } else if has("certificate")
        || has("invalidcertificate")
        || has("tls handshake")
        || has("unknownissuer")
    {
        format!("TLS: the certificate of {endpoint} was not accepted")
    } else if has("connection refused") {
        format!("connection: {endpoint} refused the connection (is the store running?)")
    } else if has("invalidaccesskeyid")
        || has("no such key:")
        || has("signaturedoesnotmatch")
        || has("invalid signature")
    {
        "credentials: the store does not accept this access key and secret".to_owned()
    } else if has("nosuchbucket") || has("bucket not found") {
        format!("bucket: {bucket} does not exist at {endpoint}")
    } else if has("accessdenied") || has("forbidden") || has("403") {
        format!("permission: this key may not do that in {bucket}")
    } else if has("timed out") || has("timeout") {
        format!("timeout: {endpoint} did not answer in time")
    } else if has("connect") || has("error sending request") {
        format!("connection: cannot reach {endpoint}")
    } else {
        // The outermost message and the innermost cause (the real reason, usually).
        let lines: Vec<&str> = chain.lines().filter(|l| !l.is_empty()).collect();
        let first: String = lines.first().unwrap_or(&"").chars().take(300).collect();
        match lines.last() {
            Some(last) if lines.len() > 1 => format!(
                "the store said: {first} ({})",
                last.chars().take(200).collect::<String>()
            ),
            _ => format!("the store said: {first}"),
        }
    };
    format!("{op} failed: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_md5s_follow_the_s3_multipart_etag() {
        use md5::Digest as _;
        // 2.5 parts, fed in odd pieces: three parts, the last one short.
        let data: Vec<u8> = (0..PART_SIZE * 5 / 2)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut p = PartMd5s::default();
        for piece in data.chunks(777_777) {
            p.update(piece);
        }
        let mut all = md5::Md5::new();
        for part in data.chunks(PART_SIZE) {
            all.update(md5::Md5::digest(part));
        }
        assert_eq!(p.etag(), format!("{}-3", hex::encode(all.finalize())));
        // An empty upload is one empty part.
        let empty = PartMd5s::default().etag();
        let one = md5::Md5::digest(md5::Md5::digest(b""));
        assert_eq!(empty, format!("{}-1", hex::encode(one)));
    }

    #[test]
    fn the_secret_is_never_in_debug_output() {
        let cfg = S3Config {
            endpoint: "http://127.0.0.1:3900".into(),
            region: "garage".into(),
            bucket: "b".into(),
            prefix: String::new(),
            path_style: true,
            access_key_id: "GK1".into(),
            secret_access_key: "very-secret-value".into(),
        };
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("very-secret-value") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn keys_sit_under_the_prefix_without_doubled_slashes() {
        let mut cfg = S3Config {
            endpoint: "http://127.0.0.1:3900".into(),
            region: "garage".into(),
            bucket: "bucket".into(),
            prefix: "/a/b/".into(),
            path_style: true,
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
        };
        let b = Bucket::open(&cfg, Duration::from_secs(1)).unwrap();
        assert_eq!(b.key("x.tar.gz").to_string(), "a/b/x.tar.gz");
        cfg.prefix = String::new();
        let b = Bucket::open(&cfg, Duration::from_secs(1)).unwrap();
        assert_eq!(b.key("x.tar.gz").to_string(), "x.tar.gz");
    }
}
