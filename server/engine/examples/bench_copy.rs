//! One copy of a file to an S3 store, for `server/engine/bench/copy.sh`: either Backstop's
//! copy path (`backstop`: the multipart upload with its sha256 and part MD5s, the check of
//! what the store holds, the sidecar) or a plain multipart upload by the same client with
//! the same part size and concurrency and no Backstop logic (`plain`). Prints the seconds
//! and the process's peak RSS (VmHWM) as one line of JSON.
//!
//!     bench_copy backstop|plain FILE   (S3 settings from BENCH_S3_ENDPOINT, BENCH_S3_REGION,
//!                                       BENCH_S3_BUCKET, BENCH_S3_KEY, BENCH_S3_SECRET)

use std::time::{Duration, Instant};

use engine::destinations::s3::{Bucket, PART_SIZE, PARTS_IN_FLIGHT, S3Config};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, file] = args.as_slice() else {
        anyhow::bail!("usage: bench_copy backstop|plain FILE");
    };
    let file = std::path::PathBuf::from(file);
    let size = std::fs::metadata(&file)?.len();
    let name = format!("bench-{mode}-{}", uuid::Uuid::new_v4());
    let started = Instant::now();
    match mode.as_str() {
        "backstop" => {
            let cfg = S3Config {
                endpoint: env("BENCH_S3_ENDPOINT"),
                region: env("BENCH_S3_REGION"),
                bucket: env("BENCH_S3_BUCKET"),
                prefix: "bench".into(),
                path_style: true,
                access_key_id: env("BENCH_S3_KEY"),
                secret_access_key: env("BENCH_S3_SECRET"),
            };
            let bucket = Bucket::open(&cfg, Duration::from_secs(60))?;
            let cancel = CancellationToken::new();
            let up = bucket.upload_file(&name, &file, &cancel, &|_| {}).await?;
            let verified_by_etag = bucket.holds(&name, &up).await?;
            if !verified_by_etag {
                let held = bucket.read_back(&name, &cancel, &|_| {}).await?;
                anyhow::ensure!(held == up.digest, "read-back differs");
            }
            bucket
                .put_sidecar(&wire::destination::Sidecar {
                    format: wire::destination::SIDECAR_FORMAT.into(),
                    name: name.clone(),
                    size_bytes: up.digest.size,
                    sha256: up.digest.sha256.clone(),
                    created_at: String::new(),
                    copied_at: String::new(),
                    encrypted: false,
                    app_version: String::new(),
                    schema_version: 0,
                    include_recordings: false,
                    trigger: "manual".into(),
                })
                .await?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!("verified by ETag: {verified_by_etag}");
            bucket.delete_copy(&name).await?;
            println!(
                "{{\"mode\":\"{mode}\",\"bytes\":{size},\"seconds\":{secs:.3},\"peak_rss_kib\":{}}}",
                peak_rss_kib()
            );
        }
        "plain" => {
            let store = AmazonS3Builder::new()
                .with_endpoint(env("BENCH_S3_ENDPOINT"))
                .with_region(env("BENCH_S3_REGION"))
                .with_bucket_name(env("BENCH_S3_BUCKET"))
                .with_access_key_id(env("BENCH_S3_KEY"))
                .with_secret_access_key(env("BENCH_S3_SECRET"))
                .with_client_options(ClientOptions::new().with_allow_http(true))
                .build()?;
            let path = ObjectPath::from(format!("bench/{name}"));
            let upload = store.put_multipart(&path).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut f = tokio::fs::File::open(&file).await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(&buf[..n]);
            }
            writer.finish().await?;
            let secs = started.elapsed().as_secs_f64();
            store.delete(&path).await?;
            println!(
                "{{\"mode\":\"{mode}\",\"bytes\":{size},\"seconds\":{secs:.3},\"peak_rss_kib\":{}}}",
                peak_rss_kib()
            );
            return Ok(());
        }
        other => anyhow::bail!("unknown mode {other}"),
    }
    Ok(())
}
