//! Encryption (DESIGN section 11) through the real server, a real Garage and Debian's `age`
//! CLI: the key shown once, checked later; encrypted copies that `age -d` opens into the very
//! archive; "set up encryption first"; import and upload of encrypted archives with the kit
//! on a fresh install; wrong keys and damaged files refused with nothing kept.

use std::process::Command;

use anyhow::{Context, Result};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use reqwest::Method;
use serde_json::{Value, json};
use tests::garage::{Garage, add_destination, import_copy};
use tests::{TestApp, run, sha256_file, sha256_hex};

/// Makes `garage`'s default bucket the destination `name` on `app`, copies encrypted, under
/// `enc/`; its id.
pub(crate) async fn add_encrypted(app: &TestApp, garage: &Garage, name: &str) -> Result<i64> {
    let mut body = garage.destination_body(name, "enc");
    body["encrypt"] = json!(true);
    add_destination(app, body).await
}

pub(crate) async fn put_encryption(app: &TestApp, body: Value) -> Result<(u16, Value)> {
    let r = app
        .req(Method::PUT, "/api/backups/encryption/")
        .json(&body)
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

/// `POST /api/backups/encryption/check/` with `identity` (a kit or a bare key line); the answer.
async fn check_key(app: &TestApp, identity: &str) -> Result<Value> {
    let (_, c) = app
        .post_json(
            "/api/backups/encryption/check/",
            json!({ "identity": identity }),
        )
        .await?;
    Ok(c)
}

/// The message of an API error answer (`{"error": {"message": ...}}`), or "" when it has none.
fn error_message(e: &Value) -> &str {
    e["error"]["message"].as_str().unwrap_or_default()
}

pub(crate) fn age_cli() -> &'static str {
    "/usr/bin/age"
}

/// A new identity file from Debian's `age-keygen` (its public key in a comment line).
fn age_keygen() -> Result<String> {
    Ok(String::from_utf8(
        Command::new("age-keygen").output()?.stdout,
    )?)
}

/// The `# public key: age1...` line of an identity file (`age-keygen`'s, or a kit).
fn public_key_of(identity: &str) -> Result<String> {
    identity
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(str::to_owned)
        .context("no public key line")
}

#[tokio::test]
async fn the_key_is_shown_once_checked_later_and_never_read_back() -> Result<()> {
    let app = TestApp::spawn().await?;
    app.login_admin().await?;
    let (_, before) = app.get_json("/api/backups/encryption/").await?;
    assert_eq!(before["enabled"], false);
    assert_eq!(before["public_key"], Value::Null);

    let (s, first) = put_encryption(&app, json!({"enabled": true})).await?;
    assert_eq!(s, 200, "{first}");
    let identity = first["identity"]
        .as_str()
        .context("identity once")?
        .to_owned();
    assert!(identity.starts_with("AGE-SECRET-KEY-1"));
    let kit = first["kit"].as_str().context("kit")?;
    assert!(
        kit.contains(&identity) && kit.contains("age -d -i"),
        "{kit}"
    );
    let public = first["public_key"].as_str().unwrap().to_owned();
    assert!(public.starts_with("age1"));

    // Never again: not in GET, not in the next PUT, not after disable/enable.
    let (_, again) = put_encryption(&app, json!({"enabled": false})).await?;
    let (_, again2) = put_encryption(&app, json!({"enabled": true})).await?;
    let (_, got) = app.get_json("/api/backups/encryption/").await?;
    for v in [&again, &again2, &got] {
        assert!(v.get("identity").is_none() && v.get("kit").is_none(), "{v}");
        assert!(!v.to_string().contains(&identity));
        assert_eq!(v["public_key"], public.as_str(), "the key is kept: {v}");
    }

    // The check: the kit or the bare line opens our archives; another key does not.
    for good in [kit, identity.as_str()] {
        let c = check_key(&app, good).await?;
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["message"], "this key opens your backups");
    }
    let c = check_key(&app, &age_keygen()?).await?;
    assert_eq!(c["ok"], false, "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("different key"),
        "{c}"
    );
    let c = check_key(&app, "nonsense").await?;
    assert_eq!(c["ok"], false, "{c}");

    // Bad settings are refused by field; encrypt_local needs encryption on.
    let (s, e) = put_encryption(&app, json!({"recipients": ["age1nope"]})).await?;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"]["fields"]["recipients"].is_string(), "{e}");
    let (s, e) = put_encryption(&app, json!({"enabled": false, "encrypt_local": true})).await?;
    assert_eq!(s, 400, "{e}");
    // encrypt_local is a switch (its effect: encrypt_local.rs); off again for the check below.
    let (s, e) = put_encryption(&app, json!({"encrypt_local": true})).await?;
    assert_eq!((s, &e["encrypt_local"]), (200, &json!(true)), "{e}");
    let (s, e) = put_encryption(&app, json!({"encrypt_local": false})).await?;
    assert_eq!((s, &e["encrypt_local"]), (200, &json!(false)), "{e}");

    // The state DB (which holds the key) is private, and no archive carries the key.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(app.data.path().join("state.db"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "state.db is {mode:o}");
    let job = app.backup(json!({})).await?;
    let (ok, listing, err) = run(Command::new("tar").arg("xzOf").arg(app.archive_of(&job)));
    assert!(ok, "{err}");
    assert!(!listing.contains(&identity), "the key is in an archive");
    Ok(())
}

#[tokio::test]
async fn an_encrypted_copy_opens_with_the_age_cli_and_the_kit_into_the_very_archive() -> Result<()>
{
    let (garage, app) = Garage::start_with_app().await?;
    // Encryption wanted but not set up: the copy fails, never goes out in the clear.
    let id = add_encrypted(&app, &garage, "off-site").await?;
    let job = app.backup(json!({})).await?;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["copies"][0]["status"], "failed", "{job}");
    assert!(
        job["copies"][0]["error"]
            .as_str()
            .unwrap()
            .contains("set up encryption first"),
        "{job}"
    );
    let (_, list) = app
        .get_json(&format!("/api/backups/destinations/{id}/archives/"))
        .await?;
    assert_eq!(list["archives"], json!([]), "nothing went out: {list}");

    // With a key and an extra recipient of the admin's own.
    let own = age_keygen()?;
    let own_public = public_key_of(&own)?;
    let (_, enc) =
        put_encryption(&app, json!({"enabled": true, "recipients": [own_public]})).await?;
    let kit = enc["kit"].as_str().unwrap().to_owned();
    let job = app.backup(json!({})).await?;
    let copy = &job["copies"][0];
    assert_eq!(copy["status"], "succeeded", "{job}");
    assert_eq!(copy["encrypted"], true);
    assert_ne!(
        copy["sha256"], job["sha256"],
        "the copy is not the plain archive"
    );
    let name = format!("{}.age", job["archive_name"].as_str().unwrap());
    let (_, list) = app
        .get_json(&format!("/api/backups/destinations/{id}/archives/"))
        .await?;
    assert_eq!(list["archives"][0]["name"], name.as_str(), "{list}");
    assert_eq!(list["archives"][0]["encrypted"], true);

    // Download it as a stranger would, and open it with Debian's age and each key.
    let store = garage.raw_store()?;
    let bytes = store
        .get(&ObjectPath::from(format!("enc/{name}")))
        .await?
        .bytes()
        .await?;
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let dir = tempfile::tempdir()?;
    let enc_path = dir.path().join(&name);
    std::fs::write(&enc_path, &bytes)?;
    for (label, key) in [("kit", kit.as_str()), ("own", own.as_str())] {
        let key_path = dir.path().join(format!("{label}.txt"));
        std::fs::write(&key_path, key)?;
        let out = dir.path().join(format!("{label}.tar.gz"));
        let (ok, _, err) = run(Command::new(age_cli())
            .args(["-d", "-i"])
            .arg(&key_path)
            .arg("-o")
            .arg(&out)
            .arg(&enc_path));
        assert!(ok, "age -d with the {label} key: {err}");
        assert_eq!(
            sha256_file(&out),
            job["sha256"].as_str().unwrap(),
            "{label}"
        );
    }
    // The README's recipe, verbatim: age -d -i kit.txt NAME | tar xz && sha256sum -c.
    let x = dir.path().join("x");
    std::fs::create_dir(&x)?;
    let (ok, _, err) = run(Command::new("sh").current_dir(&x).arg("-c").arg(format!(
        "age -d -i ../kit.txt ../{name} | tar xz && sha256sum -c checksums.sha256"
    )));
    assert!(ok, "{err}");
    Ok(())
}

#[tokio::test]
async fn a_fresh_install_imports_and_uploads_encrypted_archives_with_the_kit_only() -> Result<()> {
    let (garage, old) = Garage::start_with_app().await?;
    add_encrypted(&old, &garage, "off-site").await?;
    let (_, enc) = put_encryption(&old, json!({"enabled": true})).await?;
    let kit = enc["kit"].as_str().unwrap().to_owned();
    let job = old.backup(json!({})).await?;
    assert_eq!(job["copies"][0]["status"], "succeeded", "{job}");
    let plain_sha = job["sha256"].as_str().unwrap().to_owned();
    let name = format!("{}.age", job["archive_name"].as_str().unwrap());
    let local_plain = std::fs::read(old.archive_of(&job))?;
    drop(old);

    let app = TestApp::spawn_with(&[("BACKSTOP_DEMO", "0")]).await?;
    app.login_admin().await?;
    let id = add_encrypted(&app, &garage, "same").await?;
    let count = |v: &Value| v["total"].as_i64().unwrap();
    let (_, before) = app.get_json("/api/backups/jobs/").await?;

    // No key here and none given; a stranger's key: refused, nothing kept.
    let (s, e) = import_copy(&app, id, &name, json!({})).await?;
    assert_eq!(s, 422, "{e}");
    assert!(error_message(&e).contains("emergency kit"), "{e}");
    let stranger = age_keygen()?;
    let (s, e) = import_copy(&app, id, &name, json!({ "identity": stranger })).await?;
    assert_eq!(s, 422, "{e}");
    assert!(error_message(&e).contains("different key"), "{e}");
    let (_, after) = app.get_json("/api/backups/jobs/").await?;
    assert_eq!(count(&before), count(&after));
    let partials = std::fs::read_dir(app.data.path().join("backups"))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .count();
    assert_eq!(partials, 0);

    // With the kit: imported as the plain archive, restorable.
    let (s, imported) = import_copy(&app, id, &name, json!({ "identity": kit })).await?;
    assert_eq!(s, 201, "{imported}");
    assert_eq!(imported["trigger"], "import");
    assert_eq!(
        imported["sha256"],
        plain_sha.as_str(),
        "kept locally in the clear"
    );
    let restored = app.restore(imported["id"].as_i64().unwrap()).await?;
    assert_eq!(restored["status"], "succeeded", "{restored}");

    // An archive `age -r` encrypted, uploaded with the key in the `identity` field.
    let dir = tempfile::tempdir()?;
    let plain = dir.path().join("a.tar.gz");
    std::fs::write(&plain, &local_plain)?;
    let key_file = dir.path().join("kit.txt");
    std::fs::write(&key_file, &kit)?;
    let public = public_key_of(&kit)?;
    let sealed = dir.path().join("a.tar.gz.age");
    let (ok, _, err) = run(Command::new(age_cli())
        .args(["-r", &public, "-o"])
        .arg(&sealed)
        .arg(&plain));
    assert!(ok, "{err}");
    let upload = |identity: Option<&str>, bytes: Vec<u8>| {
        let mut form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("a.tar.gz.age"),
        );
        if let Some(i) = identity {
            form = form.text("identity", i.to_owned());
        }
        app.req(Method::POST, "/api/backups/upload/")
            .multipart(form)
    };
    let sealed_bytes = std::fs::read(&sealed)?;
    let r = upload(None, sealed_bytes.clone()).send().await?;
    assert_eq!(r.status(), 422, "no key on this install");
    let mut cut = sealed_bytes.clone();
    cut.truncate(cut.len() - 100);
    let r = upload(Some(&kit), cut).send().await?;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await?;
    assert!(error_message(&body).contains("damaged"), "{body}");
    let r = upload(Some(&kit), sealed_bytes).send().await?;
    assert_eq!(r.status(), 201);
    let up: Value = r.json().await?;
    assert_eq!(up["sha256"], sha256_hex(&local_plain).as_str());

    // The CLI: `backstop restore FILE.age --identity kit.txt` (the server stopped first).
    let mut app = app;
    app.stop();
    // `backstop verify FILE.age --identity kit.txt` reads it through the key; without the
    // key it says what is missing.
    let (ok, out, err) = run(app
        .command()
        .arg("verify")
        .arg(&sealed)
        .arg("--identity")
        .arg(&key_file));
    assert!(ok && out.contains("\"ok\": true"), "{out}{err}");
    let (ok, _, err) = run(app.command().arg("verify").arg(&sealed));
    assert!(!ok && err.contains("emergency kit"), "{err}");
    // A key file that is not there, or holds no key: each refused with what is wrong.
    let missing = dir.path().join("no-such-kit.txt");
    let (ok, _, err) = run(app
        .command()
        .arg("verify")
        .arg(&sealed)
        .arg("--identity")
        .arg(&missing));
    assert!(!ok && err.contains("cannot read the key file"), "{err}");
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "my password is hunter2")?;
    let (ok, _, err) = run(app
        .command()
        .arg("restore")
        .arg(&sealed)
        .arg("--identity")
        .arg(&junk));
    assert!(!ok && err.contains("no age secret key"), "{err}");
    let (ok, out, err) = run(app
        .command()
        .arg("restore")
        .arg(&sealed)
        .arg("--identity")
        .arg(&key_file));
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(app.command().arg("restore").arg(&sealed));
    assert!(!ok, "without a key the CLI refuses");
    assert!(err.contains("emergency kit"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_tampered_encrypted_copy_is_refused_at_import() -> Result<()> {
    let (garage, app) = Garage::start_with_app().await?;
    let id = add_encrypted(&app, &garage, "off-site").await?;
    put_encryption(&app, json!({"enabled": true})).await?;
    let job = app.backup(json!({})).await?;
    let name = format!("{}.age", job["archive_name"].as_str().unwrap());
    // Rewrite the object and its sidecar consistently (as an attacker with bucket access
    // could): only the age MAC catches it.
    let store = garage.raw_store()?;
    let key = ObjectPath::from(format!("enc/{name}"));
    let mut bytes = store.get(&key).await?.bytes().await?.to_vec();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    let side_key = ObjectPath::from(format!("enc/{name}.json"));
    let mut side: Value = serde_json::from_slice(&store.get(&side_key).await?.bytes().await?)?;
    side["sha256"] = json!(sha256_hex(&bytes));
    store.put(&key, PutPayload::from(bytes)).await?;
    store
        .put(&side_key, PutPayload::from(serde_json::to_vec(&side)?))
        .await?;
    let (s, e) = import_copy(&app, id, &name, json!({})).await?;
    assert_eq!(s, 422, "{e}");
    assert!(error_message(&e).contains("damaged"), "{e}");
    Ok(())
}
