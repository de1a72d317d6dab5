//! `recordings`: puts the recordings folder into backups that include recordings, under the
//! same archive path the built-in source used (`data/recordings/`), and says where it goes
//! back on restore. The host archives and restores the folder natively; this plugin only
//! names it.

use backstop_sdk::{Contribution, DirectoryContribution, JobContext, Placement, Plugin, RestoreRequest};

const NAME: &str = "recordings";
const MOUNT: &str = "recordings";

struct Recordings;

impl Plugin for Recordings {
    fn collect(ctx: JobContext) -> Result<Vec<Contribution>, String> {
        if !ctx.include_recordings {
            backstop_sdk::info("recordings are not included in this backup");
            return Ok(Vec::new());
        }
        Ok(vec![Contribution::Directory(DirectoryContribution {
            name: NAME.into(),
            mount: MOUNT.into(),
            path: ".".into(),
        })])
    }

    fn plan_restore(req: RestoreRequest) -> Result<Vec<Placement>, String> {
        Ok(req
            .directories
            .iter()
            .filter(|d| *d == NAME)
            .map(|d| Placement { name: d.clone(), mount: MOUNT.into(), path: ".".into() })
            .collect())
    }
}

backstop_sdk::export_plugin!(Recordings);
