//! `encrypt_local` (DESIGN section 11): the local archive folder keeps encrypted archives
//! (`NAME.tar.gz.age`, written so in one pass), and everything that reads an archive still
//! works: download (the `.age` as stored), manifest, verify, restore (with the instance key),
//! upload and import (kept encrypted), and copies (the same bytes to destinations that
//! encrypt, the plain form to those that do not). Debian's `age` opens what is stored.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};
use tests::garage::{Garage, add_destination, import_copy};
use tests::invariants::{self, Content, download};
use tests::{TestApp, run, sha256_file, sha256_hex};

use super::encryption::{add_encrypted, age_cli, put_encryption};

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Decrypts `file` with the key file `key` into `out` with Debian's `age`.
fn age_decrypt(key: &std::path::Path, file: &std::path::Path, out: &std::path::Path) {
    let (ok, _, err) = run(Command::new(age_cli())
        .args(["-d", "-i"])
        .arg(key)
        .arg("-o")
        .arg(out)
        .arg(file));
    assert!(ok, "age -d {}: {err}", file.display());
}

/// Archive files in the backup folder: name -> (size, sha256).
fn archives(app: &TestApp) -> BTreeMap<String, (u64, String)> {
    invariants::files_in(&app.data.path().join("backups"))
}

/// What interrupted or unfinished work left behind (`.partial` files, staging folders, any
/// dot entry): nothing, once no job runs.
fn leftovers(app: &TestApp) -> Vec<String> {
    invariants::leftovers(app.data.path(), &[app.data.path().join("backups")])
}

#[tokio::test]
async fn local_archives_stay_encrypted_and_still_download_verify_and_restore() -> Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let plain = app.backup(json!({})).await?;
    assert_eq!(plain["encrypted"], false, "{plain}");
    let (s, enc) = put_encryption(&app, json!({"enabled": true, "encrypt_local": true})).await?;
    assert_eq!(s, 200, "{enc}");
    assert_eq!(enc["encrypt_local"], true);
    let dir = tempfile::tempdir()?;
    let kit = dir.path().join("kit.txt");
    std::fs::write(&kit, enc["kit"].as_str().unwrap())?;

    // The backup is stored as NAME.tar.gz.age, its record describing the file as stored,
    // and no plain form of it is on disk.
    let before = Content::read(&app)?;
    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["encrypted"], true, "{job}");
    let name = job["archive_name"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".tar.gz.age"), "{name}");
    let stored = app.archive_of(&job);
    let bytes = std::fs::read(&stored)?;
    assert!(bytes.starts_with(AGE_MAGIC));
    assert_eq!(job["size_bytes"], bytes.len() as u64);
    assert_eq!(job["sha256"], sha256_hex(&bytes).as_str());
    let plain_name = name.strip_suffix(".age").unwrap();
    assert!(
        !archives(&app).contains_key(plain_name),
        "{:?}",
        archives(&app)
    );

    // Debian's age opens it with the kit into a valid archive (the README recipe).
    let x = dir.path().join("x");
    std::fs::create_dir(&x)?;
    let (ok, _, err) = run(Command::new("sh").current_dir(&x).arg("-c").arg(format!(
        "age -d -i {} {} | tar xz && sha256sum -c checksums.sha256",
        kit.display(),
        stored.display()
    )));
    assert!(ok, "{err}");

    // Download gives the .age as stored; manifest and verify read through the key.
    let id = job["id"].as_i64().unwrap();
    let r = app
        .req(Method::GET, &format!("/api/backups/jobs/{id}/download/"))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let disposition = r.headers()["content-disposition"].to_str()?.to_owned();
    assert!(disposition.contains(&name), "{disposition}");
    assert_eq!(r.bytes().await?.as_ref(), bytes.as_slice());
    let (s, m) = app
        .get_json(&format!("/api/backups/jobs/{id}/manifest/"))
        .await?;
    assert_eq!((s, &m["format"]), (200, &json!("backstop-backup")), "{m}");
    let (s, v) = app
        .post_json(&format!("/api/backups/jobs/{id}/verify/"), json!({}))
        .await?;
    assert_eq!(s, 200, "{v}");

    // Change the content, restore the encrypted backup: the content is back.
    let logos = app.data.path().join("logos");
    let victim = std::fs::read_dir(&logos)?.flatten().next().unwrap().path();
    std::fs::write(&victim, b"changed")?;
    let pool = app.content_pool().await?;
    sqlx::query("UPDATE channels SET name = name || ' (changed)'")
        .execute(&pool)
        .await?;
    pool.close().await;
    let restored = app.restore(id).await?;
    assert_eq!(restored["status"], "succeeded", "{restored}");
    assert_eq!(
        restored["encrypted"], true,
        "the restore names an encrypted source"
    );
    let after = Content::read(&app)?;
    assert!(before == after, "{}", before.diff(&after));

    // A changed byte in the stored file: refused, nothing changed.
    std::fs::write(&victim, b"changed again")?;
    let changed = Content::read(&app)?;
    let mut tampered = bytes.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 1;
    std::fs::write(&stored, &tampered)?;
    let (s, e) = app
        .post_json(&format!("/api/backups/jobs/{id}/restore/"), json!({}))
        .await?;
    if s == 202 {
        let done = app
            .wait_job(
                e["id"].as_i64().unwrap(),
                std::time::Duration::from_secs(60),
            )
            .await?;
        assert_eq!(done["status"], "failed", "{done}");
    } else {
        assert_eq!(s, 422, "{e}");
    }
    let now = Content::read(&app)?;
    assert!(changed == now, "{}", changed.diff(&now));
    std::fs::write(&stored, &bytes)?;

    // An upload is kept encrypted too (its record: the stored .age).
    let plain_bytes = match download(&app, plain["id"].as_i64().unwrap()).await? {
        Ok(b) => b,
        Err(e) => panic!("download: {e:?}"),
    };
    assert!(
        !plain_bytes.starts_with(AGE_MAGIC),
        "the older backup stays plain"
    );
    let r = app
        .req(Method::POST, "/api/backups/upload/")
        .header("content-type", "application/gzip")
        .body(plain_bytes.clone())
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let up: Value = r.json().await?;
    assert_eq!(up["encrypted"], true, "{up}");
    let up_file = app.archive_of(&up);
    assert_eq!(sha256_file(&up_file), up["sha256"].as_str().unwrap());
    let opened = dir.path().join("up.tar.gz");
    age_decrypt(&kit, &up_file, &opened);
    assert_eq!(
        std::fs::read(&opened)?,
        plain_bytes,
        "the very upload, encrypted"
    );

    // Off again: the next backup is plain; the encrypted ones still restore.
    let (s, e) = put_encryption(&app, json!({"encrypt_local": false})).await?;
    assert_eq!(s, 200, "{e}");
    let next = app.backup(json!({})).await?;
    assert_eq!(next["encrypted"], false, "{next}");
    assert!(!std::fs::read(app.archive_of(&next))?.starts_with(AGE_MAGIC));
    let restored = app.restore(id).await?;
    assert_eq!(restored["status"], "succeeded", "{restored}");
    assert_eq!(leftovers(&app), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn an_encrypted_local_archive_goes_out_as_is_or_plain_as_each_destination_wants() -> Result<()>
{
    let (garage, app) = Garage::start_with_app().await?;
    let enc_id = add_encrypted(&app, &garage, "sealed").await?;
    let mut body = garage.destination_body("open", "plain");
    body["encrypt"] = json!(false);
    let plain_id = add_destination(&app, body).await?;
    let (_, enc) = put_encryption(&app, json!({"enabled": true, "encrypt_local": true})).await?;
    let dir = tempfile::tempdir()?;
    let kit = dir.path().join("kit.txt");
    std::fs::write(&kit, enc["kit"].as_str().unwrap())?;

    let job = app.backup(json!({})).await?;
    let name = job["archive_name"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".age"), "{job}");
    let copies = job["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{job}");
    for c in copies {
        assert_eq!(c["status"], "succeeded", "{job}");
    }
    let by = |id: i64| {
        copies
            .iter()
            .find(|c| c["destination_id"] == id)
            .unwrap()
            .clone()
    };
    // The sealed destination got the very bytes stored here.
    let sealed = by(enc_id);
    assert_eq!(sealed["encrypted"], true);
    assert_eq!(sealed["sha256"], job["sha256"], "the same bytes: {job}");
    // The open one got the plain .tar.gz: the stored file, decrypted.
    let open = by(plain_id);
    assert_eq!(open["encrypted"], false);
    let plain = dir.path().join("plain.tar.gz");
    age_decrypt(&kit, &app.archive_of(&job), &plain);
    assert_eq!(open["sha256"], sha256_file(&plain).as_str(), "{job}");
    let (_, list) = app
        .get_json(&format!("/api/backups/destinations/{plain_id}/archives/"))
        .await?;
    assert_eq!(
        list["archives"][0]["name"],
        name.strip_suffix(".age").unwrap(),
        "{list}"
    );
    assert_eq!(leftovers(&app), Vec::<String>::new());

    // Import of the plain copy is kept encrypted here, and restores.
    let (s, imported) = import_copy(
        &app,
        plain_id,
        name.strip_suffix(".age").unwrap(),
        json!({}),
    )
    .await?;
    assert_eq!(s, 201, "{imported}");
    assert_eq!(imported["encrypted"], true, "{imported}");
    let restored = app.restore(imported["id"].as_i64().unwrap()).await?;
    assert_eq!(restored["status"], "succeeded", "{restored}");
    Ok(())
}

#[tokio::test]
async fn a_plain_archive_s_encrypted_copy_made_in_the_same_pass_or_on_retry_opens_with_the_kit()
-> Result<()> {
    use object_store::ObjectStoreExt;
    use object_store::path::Path as ObjectPath;
    let (garage, app) = Garage::start_with_app().await?;
    let id = add_encrypted(&app, &garage, "sealed").await?;
    let (_, enc) = put_encryption(&app, json!({"enabled": true})).await?;
    let dir = tempfile::tempdir()?;
    let kit = dir.path().join("kit.txt");
    std::fs::write(&kit, enc["kit"].as_str().unwrap())?;
    let job = app.backup(json!({})).await?;
    assert_eq!(job["encrypted"], false, "the local archive stays plain");
    let jid = job["id"].as_i64().unwrap();
    let name = format!("{}.age", job["archive_name"].as_str().unwrap());
    let store = garage.raw_store()?;
    // What the store holds, opened by Debian's age with the kit: the local archive.
    let opened_sha = |label: &'static str| {
        let (store, name, dir, kit) = (&store, &name, dir.path(), &kit);
        async move {
            let bytes = store
                .get(&ObjectPath::from(format!("enc/{name}")))
                .await?
                .bytes()
                .await?;
            let sealed = dir.join(format!("{label}.age"));
            std::fs::write(&sealed, &bytes)?;
            let out = dir.join(format!("{label}.tar.gz"));
            age_decrypt(kit, &sealed, &out);
            anyhow::Ok((sha256_hex(&bytes), sha256_file(&out)))
        }
    };
    let first = &job["copies"][0];
    assert_eq!(first["status"], "succeeded", "{job}");
    assert_eq!(first["encrypted"], true);
    let (held, plain) = opened_sha("first").await?;
    assert_eq!(held, first["sha256"].as_str().unwrap());
    assert_eq!(
        plain,
        job["sha256"].as_str().unwrap(),
        "the copy opens into the local archive"
    );
    assert_eq!(leftovers(&app), Vec::<String>::new());

    // A retry encrypts the archive afresh (a new file key, so other bytes), same content.
    let (s, body) = super::destinations::retry(&app, jid, id).await?;
    assert_eq!(s, 202, "{body}");
    let again = super::destinations::wait_for_retry(&app, jid).await?;
    let second = &again["copies"][0];
    assert_eq!(second["status"], "succeeded", "{again}");
    assert_ne!(second["sha256"], first["sha256"], "encrypted anew");
    let (held, plain) = opened_sha("retry").await?;
    assert_eq!(held, second["sha256"].as_str().unwrap());
    assert_eq!(plain, job["sha256"].as_str().unwrap());
    Ok(())
}
