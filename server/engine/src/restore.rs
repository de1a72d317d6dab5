//! Restore (DESIGN section 5). PLACEHOLDER until the archive reader lands in this session.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use crate::archive::ProgressFn;
use crate::jobs::Job;
use crate::{Engine, Error, ErrorKind, Result};

impl Engine {
    pub(crate) async fn execute_restore_impl(
        &self,
        _job_id: i64,
        _cancel: &CancellationToken,
        _ponr: &AtomicBool,
        _progress: ProgressFn,
    ) -> Result<crate::jobs::Completed> {
        Err(Error::new(ErrorKind::Unavailable, "restore is not available in this build yet"))
    }

    pub async fn restore_file_cli(&self, _file: &Path, _progress: ProgressFn) -> Result<Job> {
        Err(Error::new(ErrorKind::Unavailable, "restore is not available in this build yet"))
    }

    pub async fn verify_file(&self, _file: &Path, _progress: ProgressFn) -> Result<serde_json::Value> {
        Err(Error::new(ErrorKind::Unavailable, "verify is not available in this build yet"))
    }
}
