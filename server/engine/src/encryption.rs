//! Encryption (DESIGN section 11): the instance key, extra recipients, and streamed age
//! encryption and decryption of archive files.
//!
//! - The instance key is an X25519 age identity made when encryption is first enabled. Its
//!   secret is returned once (with the emergency kit) and then kept only in the state DB
//!   (settings key `encryption.identity`; the state DB is never archived, never restored,
//!   and its file is made 0600 at open). It is never logged: it only ever travels as an
//!   `age::secrecy::SecretString` or in the one answer that shows it.
//! - Disabling encryption keeps the key, so archives already encrypted still open, and
//!   enabling it again reuses it (no second kit: the first one still works).
//! - `encrypt_local` keeps the local archives encrypted too: a backup is then written as
//!   `NAME.tar.gz.age` straight away (tar -> gzip -> age -> file, one pass, the plain
//!   `.tar.gz` never touches the disk), and its record's size and sha256 are those of the
//!   `.age` file as stored (what a download gives). Restore, verify and the manifest read it
//!   through the instance key; a copy to a destination that wants encryption sends those
//!   bytes as they are. Turning it off (or on) changes only the backups made afterwards:
//!   archives already stored keep their form, and the key is kept, so all stay restorable.
//! - `NAME.tar.gz.age` is exactly the v1 `.tar.gz`, encrypted to the instance key and every
//!   extra recipient, so any age tool (and any of those keys) opens it.
//!
//! Encrypting and decrypting stream through fixed buffers (age's STREAM chunks are 64 KiB),
//! so memory does not grow with the archive; both are blocking and run off the async workers.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};

use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::{Error, ErrorKind, Result};
use wire::encryption::{CheckResult, EncryptionView};

const SETTINGS_KEY: &str = "encryption";
const IDENTITY_KEY: &str = "encryption.identity";
/// The first bytes of every age file (the binary format's header line).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    enabled: bool,
    encrypt_local: bool,
    #[serde(default)]
    recipients: Vec<String>,
}

async fn saved(pool: &SqlitePool) -> Result<Saved> {
    Ok(match crate::state::get_setting(pool, SETTINGS_KEY).await? {
        Some(v) => serde_json::from_value(v)
            .map_err(|e| Error::internal("the stored encryption settings are corrupt", e))?,
        None => Saved::default(),
    })
}

async fn stored_identity(pool: &SqlitePool) -> Result<Option<age::x25519::Identity>> {
    match crate::state::get_setting(pool, IDENTITY_KEY).await? {
        Some(serde_json::Value::String(s)) => {
            age::x25519::Identity::from_str(&s).map(Some).map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("the stored instance key is corrupt: {e}"),
                )
            })
        }
        Some(_) => Err(Error::new(
            ErrorKind::Internal,
            "the stored instance key is corrupt",
        )),
        None => Ok(None),
    }
}

/// The settings as the API shows them (no secret).
pub async fn view(pool: &SqlitePool) -> Result<EncryptionView> {
    let s = saved(pool).await?;
    Ok(EncryptionView {
        enabled: s.enabled,
        encrypt_local: s.encrypt_local,
        public_key: stored_identity(pool)
            .await?
            .map(|i| i.to_public().to_string()),
        recipients: s.recipients,
        identity: None,
        kit: None,
    })
}

/// Applies `PUT /api/backups/encryption/` (`enabled`, `encrypt_local`, `recipients`, each
/// optional). The PUT that first enables encryption creates the instance key and returns
/// its secret and the emergency kit, once.
pub async fn update(pool: &SqlitePool, body: &serde_json::Value) -> Result<EncryptionView> {
    let obj = body
        .as_object()
        .ok_or_else(|| Error::invalid("the body must be a JSON object"))?;
    let mut s = saved(pool).await?;
    for (k, v) in obj {
        match k.as_str() {
            "enabled" => s.enabled = v.as_bool().ok_or_else(|| bool_field("enabled"))?,
            "encrypt_local" => {
                s.encrypt_local = v.as_bool().ok_or_else(|| bool_field("encrypt_local"))?
            }
            "recipients" => {
                let list = v.as_array().ok_or_else(|| {
                    Error::invalid("recipients must be a list of age public keys")
                        .with_field("recipients", "a list of age1... public keys")
                })?;
                let mut out = Vec::new();
                for (i, r) in list.iter().enumerate() {
                    let text = r.as_str().unwrap_or("").trim();
                    if age::x25519::Recipient::from_str(text).is_err() {
                        return Err(Error::invalid(format!(
                            "recipient {} is not an age X25519 public key (age1...): {:?}",
                            i + 1,
                            text.chars().take(80).collect::<String>()
                        ))
                        .with_field("recipients", "each must be an age1... public key"));
                    }
                    if !out.iter().any(|o| o == text) {
                        out.push(text.to_owned());
                    }
                }
                if out.len() > 20 {
                    return Err(Error::invalid("at most 20 extra recipients")
                        .with_field("recipients", "at most 20"));
                }
                s.recipients = out;
            }
            // Read-only fields a client may send back as it got them.
            "public_key" | "identity" | "kit" => {}
            other => {
                return Err(Error::invalid(format!("unknown field {other:?}"))
                    .with_field(other, "not an encryption setting"));
            }
        }
    }
    if s.encrypt_local && !s.enabled {
        return Err(
            Error::invalid("encrypting the local folder needs encryption enabled")
                .with_field("encrypt_local", "enable encryption first"),
        );
    }
    let mut created = None;
    if s.enabled && stored_identity(pool).await?.is_none() {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        crate::state::put_setting(
            pool,
            IDENTITY_KEY,
            &serde_json::Value::String(secret.expose_secret().to_owned()),
        )
        .await?;
        created = Some(identity);
    }
    crate::state::put_setting(
        pool,
        SETTINGS_KEY,
        &serde_json::to_value(&s).map_err(|e| Error::internal("cannot store the settings", e))?,
    )
    .await?;
    let mut v = view(pool).await?;
    if let Some(identity) = created {
        let secret = identity.to_string().expose_secret().to_owned();
        v.kit = Some(kit_text(&secret, &identity.to_public().to_string()));
        v.identity = Some(secret);
    }
    Ok(v)
}

fn bool_field(name: &str) -> Error {
    Error::invalid(format!("{name} must be true or false")).with_field(name, "true or false")
}

/// Does `identity` open this instance's archives (is it the instance key)?
pub async fn check(pool: &SqlitePool, identity: &str) -> Result<CheckResult> {
    let Some(ours) = stored_identity(pool).await? else {
        return Ok(CheckResult {
            ok: false,
            message: "encryption has never been enabled here, so there is no instance key yet"
                .into(),
        });
    };
    let given = match parse_identity(identity) {
        Ok(i) => i,
        Err(e) => {
            return Ok(CheckResult {
                ok: false,
                message: e.message().to_owned(),
            });
        }
    };
    Ok(
        if given.to_public().to_string() == ours.to_public().to_string() {
            CheckResult {
                ok: true,
                message: "this key opens your backups".into(),
            }
        } else {
            CheckResult {
                ok: false,
                message: format!(
                    "this is a different key (its public key is {}); it does not open the archives this instance encrypts",
                    given.to_public()
                ),
            }
        },
    )
}

/// A key as an admin pastes it: the `AGE-SECRET-KEY-1...` line alone or a whole key file
/// (an emergency kit, or `age-keygen` output, with `#` comments).
///
/// The key is found anywhere in the text, not only on a line of its own: a kit pasted into
/// a one-line field (a browser's password box) arrives with its line breaks removed, so the
/// key is cut out by its length, the 58 bech32 characters after `AGE-SECRET-KEY-1` (32 bytes
/// and a 6-character checksum; the checksum catches a wrong or missing character).
pub fn parse_identity(text: &str) -> Result<age::x25519::Identity> {
    const PREFIX: &str = "AGE-SECRET-KEY-1";
    const DATA_LEN: usize = 58;
    let at = text.find(PREFIX).ok_or_else(|| {
        Error::invalid("no age secret key (a line starting AGE-SECRET-KEY-1) was given").with_field(
            "identity",
            "paste the AGE-SECRET-KEY-1... line or the whole kit",
        )
    })?;
    let data: String = text[at + PREFIX.len()..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .take(DATA_LEN)
        .collect();
    age::x25519::Identity::from_str(&format!("{PREFIX}{data}")).map_err(|_| {
        Error::invalid(
            "the AGE-SECRET-KEY-1... line is not a valid age key (a character is wrong or missing)",
        )
        .with_field("identity", "not a valid age secret key")
    })
}

/// Who encrypted copies are for: the instance key and every extra recipient. `None` when
/// encryption is off or was never set up.
pub async fn recipients(pool: &SqlitePool) -> Result<Option<Vec<age::x25519::Recipient>>> {
    let s = saved(pool).await?;
    let Some(identity) = stored_identity(pool).await? else {
        return Ok(None);
    };
    if !s.enabled {
        return Ok(None);
    }
    let mut out = vec![identity.to_public()];
    for r in &s.recipients {
        out.push(age::x25519::Recipient::from_str(r).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("a stored recipient is corrupt: {e}"),
            )
        })?);
    }
    Ok(Some(out))
}

/// Who local archives are encrypted for, when the settings say to keep them encrypted
/// (`encrypt_local`); `None` when local archives stay plain.
pub async fn local_recipients(pool: &SqlitePool) -> Result<Option<Vec<age::x25519::Recipient>>> {
    if !saved(pool).await?.encrypt_local {
        return Ok(None);
    }
    recipients(pool).await
}

/// The keys that open this instance's own encrypted archives: the instance key, if any.
pub async fn local_keys(pool: &SqlitePool) -> Result<Vec<age::x25519::Identity>> {
    Ok(stored_identity(pool).await?.into_iter().collect())
}

/// Opens an age stream for reading with `keys`. A file that is not age, a key that does
/// not open it, or no key at all: `Rejected`, with the reason.
pub fn decrypting<R: Read>(
    input: R,
    keys: &[age::x25519::Identity],
) -> Result<age::stream::StreamReader<R>> {
    if keys.is_empty() {
        return Err(Error::rejected(
            "this archive is encrypted and there is no key to open it here: give the key from the emergency kit (AGE-SECRET-KEY-1...)",
        )
        .with_field("identity", "required for an encrypted archive"));
    }
    let decryptor = age::Decryptor::new(input)
        .map_err(|e| Error::rejected(format!("the file is not a readable age file: {e}")))?;
    decryptor
        .decrypt(keys.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Error::rejected(
                "this key does not open the archive: it was encrypted for a different key",
            ),
            other => Error::rejected(format!("the archive cannot be decrypted: {other}")),
        })
}

/// An archive file as a plain `.tar.gz` stream: decrypted with `keys` when it is an age
/// file, as it is otherwise.
pub fn open_plain(path: &Path, keys: &[age::x25519::Identity]) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::internal(format!("cannot open {}", path.display()), e))?;
    let file = BufReader::with_capacity(256 << 10, file);
    Ok(if is_age_file(path) {
        Box::new(decrypting(file, keys)?)
    } else {
        Box::new(file)
    })
}

/// An age encryptor writing into a file, counting and hashing what it writes (the bytes as
/// stored). Memory is one 64 KiB STREAM chunk plus the file buffers, whatever the size.
///
/// Where the ciphertext is hashed and written ([`Hashing`]): on the caller's thread, right
/// after each chunk is encrypted (the chunk is still in cache; best where other threads keep
/// the cores busy, as in the archive pipeline), or on a thread of its own
/// ([`OffThreadWriter`]; best for a lone encryption, which then uses two cores).
pub struct EncryptingWriter {
    inner: age::stream::StreamWriter<Out>,
}

/// See [`EncryptingWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    Inline,
    OffThread,
}

enum Out {
    Inline {
        file: BufWriter<std::fs::File>,
        hasher: Sha256,
        size: u64,
    },
    OffThread(OffThreadWriter),
}

impl Write for Out {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Inline { file, hasher, size } => {
                file.write_all(data)?;
                hasher.update(data);
                *size += data.len() as u64;
                Ok(data.len())
            }
            Out::OffThread(w) => w.write(data),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Inline { file, .. } => file.flush(),
            Out::OffThread(w) => w.flush(),
        }
    }
}

impl EncryptingWriter {
    pub fn new(
        file: std::fs::File,
        recipients: &[age::x25519::Recipient],
        hashing: Hashing,
    ) -> Result<Self> {
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encrypt: {e}")))?;
        let out = match hashing {
            Hashing::Inline => Out::Inline {
                file: BufWriter::with_capacity(1 << 20, file),
                hasher: Sha256::new(),
                size: 0,
            },
            Hashing::OffThread => Out::OffThread(
                OffThreadWriter::new(file)
                    .map_err(|e| Error::internal("cannot start the encryption", e))?,
            ),
        };
        let inner = encryptor
            .wrap_output(out)
            .map_err(|e| Error::internal("cannot start the encryption", e))?;
        Ok(EncryptingWriter { inner })
    }

    /// Writes the last chunk (without it the file does not decrypt) and flushes. Returns the
    /// file (not synced), the size and sha256 of what was written.
    pub fn finish(self) -> std::io::Result<(std::fs::File, u64, String)> {
        match self.inner.finish()? {
            Out::Inline { file, hasher, size } => {
                let file = file.into_inner().map_err(|e| e.into_error())?;
                Ok((file, size, hex::encode(hasher.finalize())))
            }
            Out::OffThread(w) => w.finish(),
        }
    }
}

/// Size of the batches [`OffThreadWriter`] hands to its thread.
const BATCH: usize = 1 << 20;
/// Batches in circulation (being filled, queued, being written).
const BATCHES: usize = 4;

type Finished = std::io::Result<(std::fs::File, u64, String)>;

/// Hashes, counts and writes what it is given on a thread of its own, in [`BATCH`]-sized
/// buffers that circulate between the two threads (never allocated per batch). A write error
/// on that thread stops the next hand-over here; [`OffThreadWriter::finish`] reports it.
/// Dropped unfinished (an error or cancel upstream), the thread ends at its next batch.
struct OffThreadWriter {
    buf: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<Finished>>,
}

impl OffThreadWriter {
    fn new(mut file: std::fs::File) -> std::io::Result<Self> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(BATCHES - 2);
        let (empty_tx, empty_rx) = channel::<Vec<u8>>();
        for _ in 1..BATCHES {
            let _ = empty_tx.send(Vec::with_capacity(BATCH));
        }
        let thread = std::thread::Builder::new()
            .name("archive-hash".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                while let Ok(mut batch) = full_rx.recv() {
                    hasher.update(&batch);
                    size += batch.len() as u64;
                    // On an error the receiver is dropped: the next hand-over fails at once.
                    file.write_all(&batch)?;
                    batch.clear();
                    let _ = empty_tx.send(batch);
                }
                Ok((file, size, hex::encode(hasher.finalize())))
            })?;
        Ok(OffThreadWriter {
            buf: Vec::with_capacity(BATCH),
            full: Some(full_tx),
            empty: empty_rx,
            thread: Some(thread),
        })
    }

    /// Hands the current buffer over and takes an emptied one; a stopped thread's error.
    fn hand_over(&mut self) -> std::io::Result<()> {
        let sent = match (&self.full, self.empty.recv()) {
            (Some(full), Ok(next)) => full.send(std::mem::replace(&mut self.buf, next)).is_ok(),
            _ => false,
        };
        if sent {
            return Ok(());
        }
        self.full = None;
        Err(match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => e,
            _ => std::io::Error::other("the archive file writer stopped"),
        })
    }

    /// Writes what is left, waits for the thread; the file (not synced), size and sha256.
    fn finish(mut self) -> Finished {
        if !self.buf.is_empty()
            && let Some(full) = &self.full
        {
            let _ = full.send(std::mem::take(&mut self.buf));
        }
        self.full = None;
        self.thread
            .take()
            .ok_or_else(|| std::io::Error::other("the archive file writer stopped"))?
            .join()
            .map_err(|_| std::io::Error::other("the archive file writer crashed"))?
    }
}

impl Write for OffThreadWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(BATCH - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BATCH {
            self.hand_over()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Write for EncryptingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether an archive file name is the encrypted form (`NAME.tar.gz.age`).
pub fn is_age_name(name: &str) -> bool {
    name.ends_with(".age")
}

/// Whether `path` starts like an age file.
pub fn is_age_file(path: &Path) -> bool {
    let mut head = [0u8; AGE_MAGIC.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == AGE_MAGIC)
}

/// Encrypts `src` into the new file `dst` for `recipients`, streamed; fsyncs it. Returns
/// the size and sha256 of what was written. Blocking.
pub fn encrypt_file(
    src: &Path,
    dst: &Path,
    recipients: &[age::x25519::Recipient],
    cancel: &CancellationToken,
    progress: &dyn Fn(u64),
) -> Result<(u64, String)> {
    let input = std::fs::File::open(src)
        .map_err(|e| Error::internal(format!("cannot read {}", src.display()), e))?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| Error::internal(format!("cannot create {}", dst.display()), e))?;
    let io = |e: std::io::Error| Error::internal(format!("cannot write {}", dst.display()), e);
    let mut writer = EncryptingWriter::new(out, recipients, Hashing::OffThread)?;
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(Error::canceled());
        }
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::internal(format!("cannot read {}", src.display()), e))?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).map_err(io)?;
        done += n as u64;
        progress(done);
    }
    let (file, size, sha256) = writer.finish().map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok((size, sha256))
}

/// Decrypts the age file `src` into the new file `dst` with `identities`, streamed; fsyncs
/// it. A wrong key, a file that is not age, a truncated or tampered file: `Rejected` with
/// the reason, and `dst` removed. Returns the size and sha256 of the plaintext. Blocking.
pub fn decrypt_file(
    src: &Path,
    dst: &Path,
    identities: &[age::x25519::Identity],
    cancel: &CancellationToken,
) -> Result<(u64, String)> {
    let result = decrypt_inner(src, dst, identities, cancel);
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

fn decrypt_inner(
    src: &Path,
    dst: &Path,
    identities: &[age::x25519::Identity],
    cancel: &CancellationToken,
) -> Result<(u64, String)> {
    let input = std::fs::File::open(src)
        .map_err(|e| Error::internal(format!("cannot read {}", src.display()), e))?;
    let mut reader = decrypting(BufReader::with_capacity(1 << 20, input), identities)?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| Error::internal(format!("cannot create {}", dst.display()), e))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let werr = |e: std::io::Error| Error::internal(format!("cannot write {}", dst.display()), e);
    loop {
        if cancel.is_cancelled() {
            return Err(Error::canceled());
        }
        let n = reader.read(&mut buf).map_err(|e| {
            Error::rejected(format!(
                "the encrypted archive is damaged (truncated or changed), so nothing was restored: {e}"
            ))
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(werr)?;
        size += n as u64;
    }
    out.flush().map_err(werr)?;
    out.into_inner()
        .map_err(|e| werr(e.into_error()))?
        .sync_all()
        .map_err(werr)?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// The emergency kit: a text file an age tool reads as a key file (comments are `#`).
pub fn kit_text(secret: &str, public_key: &str) -> String {
    format!(
        "# Backstop emergency kit. Keep this file OFF the machine it protects (a password\n\
         # manager, a USB stick in a drawer, paper). Without it, encrypted backups cannot be\n\
         # opened by anyone, including you.\n\
         #\n\
         # Restore with Backstop (a fresh install): add the same destination on the Backups\n\
         #   page, Browse copies, Import, paste this key when asked, then Restore.\n\
         # Restore without Backstop: age -d -i backstop-key.txt NAME.tar.gz.age | tar xz\n\
         #   then check it with: sha256sum -c checksums.sha256\n\
         # Check that this is still the right key: Backups page, Encryption, Check a key.\n\
         #\n\
         # public key: {public_key}\n\
         {secret}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn what_is_encrypted_opens_with_the_key_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let plain: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let src = file(dir.path(), "a.tar.gz", &plain);
        let key = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let enc = dir.path().join("a.tar.gz.age");
        let never = CancellationToken::new();
        let (size, sha) = encrypt_file(
            &src,
            &enc,
            &[key.to_public(), other.to_public()],
            &never,
            &|_| {},
        )
        .unwrap();
        let bytes = std::fs::read(&enc).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&bytes)));
        assert!(bytes.starts_with(AGE_MAGIC) && is_age_file(&enc));
        // Either recipient opens it.
        for id in [&key, &other] {
            let out = dir.path().join(format!("out-{}", id.to_public()));
            let (n, s) = decrypt_file(&enc, &out, std::slice::from_ref(id), &never).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), plain);
            assert_eq!(
                (n, s),
                (plain.len() as u64, hex::encode(Sha256::digest(&plain)))
            );
        }
        // A stranger's key, a truncated file, a flipped byte: refused, nothing left behind.
        let stranger = age::x25519::Identity::generate();
        let out = dir.path().join("x");
        let e = decrypt_file(&enc, &out, &[stranger], &never).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(e.message().contains("different key"), "{}", e.message());
        assert!(!out.exists());
        let cut = file(dir.path(), "cut.age", &bytes[..bytes.len() - 1000]);
        let e = decrypt_file(&cut, &out, std::slice::from_ref(&key), &never).unwrap_err();
        assert!(e.message().contains("damaged"), "{}", e.message());
        assert!(!out.exists());
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        let bad = file(dir.path(), "bad.age", &flipped);
        let e = decrypt_file(&bad, &out, std::slice::from_ref(&key), &never).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(!out.exists());
        let not_age = file(dir.path(), "plain", b"hello");
        assert!(decrypt_file(&not_age, &out, &[key], &never).is_err() && !is_age_file(&not_age));
    }

    #[test]
    fn a_pasted_kit_or_key_line_parses_and_junk_is_refused_with_a_reason() {
        let key = age::x25519::Identity::generate();
        let secret = key.to_string().expose_secret().to_owned();
        let kit = kit_text(&secret, &key.to_public().to_string());
        assert_eq!(
            parse_identity(&kit).unwrap().to_public().to_string(),
            key.to_public().to_string()
        );
        assert!(parse_identity(&format!("  {secret}  ")).is_ok());
        // What a one-line field makes of a pasted kit: the lines run together, and text may
        // follow the key directly.
        for run_together in [
            kit.replace('\n', ""),
            format!("{}trailing words", kit.replace('\n', "")),
        ] {
            assert_eq!(
                parse_identity(&run_together)
                    .unwrap()
                    .to_public()
                    .to_string(),
                key.to_public().to_string()
            );
        }
        let Err(e) = parse_identity("hello") else {
            panic!("junk parsed as a key")
        };
        assert_eq!(
            e.field_errors().get("identity").map(String::as_str),
            Some("paste the AGE-SECRET-KEY-1... line or the whole kit")
        );
        let mut broken = secret.clone();
        broken.pop();
        assert!(parse_identity(&broken).is_err());
    }
}
