//! The Garage harness (`tests::garage::Garage`): a started node has its default bucket with
//! the default key's rights, the S3 API is up and refuses anonymous requests, keys and
//! buckets made through the harness work, and the data outlives stop/kill and a restart.

use tests::garage::Garage;

/// The permission flags (`RWO`, `RW `, ...) of `key` in `garage bucket info BUCKET`'s key
/// table, or None when the key is not listed.
async fn perms(garage: &Garage, bucket: &str, key: &str) -> Option<String> {
    let info = garage.cli(&["bucket", "info", bucket]).await.ok()?;
    let keys = info.split("==== KEYS FOR THIS BUCKET ====").nth(1)?;
    let line = keys.lines().find(|l| l.contains(key))?;
    Some(line.split_whitespace().next()?.to_owned())
}

/// Status of an unsigned GET of `/{bucket}` (path style).
async fn anonymous_get(garage: &Garage, bucket: &str) -> u16 {
    let url = format!("{}/{bucket}", garage.endpoint());
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .expect("GET the bucket");
    r.status().as_u16()
}

#[tokio::test]
async fn garage_starts_with_a_bucket_and_key_and_enforces_auth() {
    let garage = Garage::start().await.expect("start Garage");
    assert!(garage.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(garage.region(), "garage");
    assert!(garage.access_key_id().starts_with("GK"));
    assert_eq!(garage.secret_access_key().len(), 64);

    let info = garage
        .cli(&["bucket", "info", garage.bucket()])
        .await
        .expect("the default bucket exists");
    assert!(info.contains(garage.bucket()), "{info}");
    assert_eq!(
        perms(&garage, garage.bucket(), garage.access_key_id()).await,
        Some("RWO".into()),
        "the default key reads, writes and owns the default bucket:\n{info}"
    );
    // A bucket that does not exist is an error, so the checks above can fail.
    assert!(
        garage
            .cli(&["bucket", "info", "no-such-bucket"])
            .await
            .is_err()
    );

    // The S3 API is up and wants a signature.
    assert_eq!(anonymous_get(&garage, garage.bucket()).await, 403);

    // A second bucket and a key with read/write (not owner) on it.
    garage.create_bucket("second").await.expect("create bucket");
    let (id, secret) = garage.create_key("writer", "second").await.expect("key");
    assert!(id.starts_with("GK") && secret.len() >= 16, "{id} {secret}");
    assert_ne!(id, garage.access_key_id());
    assert_eq!(
        perms(&garage, "second", &id).await.as_deref(),
        Some("RW"),
        "the new key reads and writes the new bucket"
    );
    assert_eq!(perms(&garage, garage.bucket(), &id).await, None);
    assert!(garage.create_bucket("second").await.is_err(), "duplicate");
}

#[tokio::test]
async fn garage_keeps_buckets_across_stop_kill_and_start_again() {
    let mut garage = Garage::start().await.expect("start Garage");
    garage.create_bucket("kept").await.expect("create bucket");
    let (id, _) = garage.create_key("kept-key", "kept").await.expect("key");
    let endpoint = garage.endpoint();

    garage.stop().await.expect("graceful stop");
    assert!(!garage.is_running());
    assert!(
        garage.cli(&["bucket", "info", "kept"]).await.is_err(),
        "a stopped node answers no CLI"
    );
    garage.start_again().await.expect("start again");
    assert_eq!(garage.endpoint(), endpoint, "same port");
    assert_eq!(perms(&garage, "kept", &id).await.as_deref(), Some("RW"));
    assert_eq!(
        perms(&garage, garage.bucket(), garage.access_key_id()).await,
        Some("RWO".into())
    );

    // SIGKILL, no shutdown: the metadata (SQLite WAL) survives as well.
    garage.kill();
    assert!(!garage.is_running());
    garage.start_again().await.expect("start after kill");
    assert_eq!(perms(&garage, "kept", &id).await.as_deref(), Some("RW"));
    assert_eq!(anonymous_get(&garage, "kept").await, 403);
}
