//! Names in the data dir and the writability probe for the data folders and the backup
//! path. It sits at the bottom of the crate because the engine's start, the settings
//! validation, retention's restart sweep and the restore swap all ask it.

use std::path::Path;

use crate::{Error, ErrorKind, Result};

/// The restore journal's file name in the data dir (written by the restore swap; the
/// restart sweep keeps the staging folders while it exists).
pub(crate) const JOURNAL: &str = ".restore-swap.json";

/// Fails with a clear message when `dir` is not writable by this process.
///
/// The probe is an unnamed file (`O_TMPFILE`) where the filesystem supports it, so a crash
/// during the check leaves nothing behind in a folder that may be the user's; elsewhere a
/// named `.backstop-write-test-<pid>` file, removed at once (and by the restart sweep).
pub fn check_writable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
    {
        Ok(_) => return Ok(()),
        // Unsupported here (EOPNOTSUPP, EISDIR on old kernels, EINVAL): use a named probe.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
            ) => {}
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{} is not writable by the user running Backstop",
                    dir.display()
                ),
            )
            .with_source(e));
        }
    }
    let probe = dir.join(format!(".backstop-write-test-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} is not writable by the user running Backstop",
                dir.display()
            ),
        )
        .with_source(e)),
    }
}
