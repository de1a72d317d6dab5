//! The data-dir lock (`backstop.lock`): `serve` and the CLI commands that change data both
//! take it, so it sits below [`crate::cli`] and [`crate::http`].

use std::path::Path;

use engine::{Error, Result};

/// The data-dir lock: held by `serve` for its lifetime, and by CLI commands that change
/// data, so a CLI backup or restore never races a running server.
pub fn exclusive_lock(data_dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::invalid(format!(
            "cannot create the data folder {}",
            data_dir.display()
        ))
        .with_source(e)
    })?;
    let path = data_dir.join("backstop.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Error::invalid(format!(
                "cannot open {}: is the data folder writable?",
                path.display()
            ))
            .with_source(e)
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::conflict(format!(
            "another Backstop process (a running server?) holds {}; start the job from the web UI or the API \
             (POST /api/backups/jobs/), or stop the server first",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::internal(
            format!("cannot lock {}", path.display()),
            e,
        )),
    }
}
