//! `custom-dirs`: extra directories listed in the plugin's settings, each archived under
//! `data/<name>/` and put back in the same place on restore. Every directory lies beneath
//! the `root` mount the admin granted; the host refuses anything that would leave it.

use backstop_sdk::{Contribution, DirectoryContribution, JobContext, Placement, Plugin, RestoreRequest};

const MOUNT: &str = "root";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    path: String,
}

/// The `directories` setting: a JSON array of `{"name", "path"}`.
fn entries() -> Result<Vec<Entry>, String> {
    match backstop_sdk::config("directories") {
        None => Ok(Vec::new()),
        Some(raw) => serde_json::from_str(&raw)
            .map_err(|e| format!("the directories setting must be a list of {{name, path}}: {e}")),
    }
}

struct CustomDirs;

impl Plugin for CustomDirs {
    fn collect(_ctx: JobContext) -> Result<Vec<Contribution>, String> {
        let list = entries()?;
        if list.is_empty() {
            backstop_sdk::info("no directories configured");
        } else {
            let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
            backstop_sdk::info(&format!("archiving {}", names.join(", ")));
        }
        Ok(list
            .into_iter()
            .map(|e| {
                Contribution::Directory(DirectoryContribution { name: e.name, mount: MOUNT.into(), path: e.path })
            })
            .collect())
    }

    fn plan_restore(req: RestoreRequest) -> Result<Vec<Placement>, String> {
        let list = entries()?;
        let mut out = Vec::new();
        for name in &req.directories {
            match list.iter().find(|e| &e.name == name) {
                Some(e) => out.push(Placement { name: name.clone(), mount: MOUNT.into(), path: e.path.clone() }),
                None => backstop_sdk::warn(&format!(
                    "data/{name}/ is in the archive but no longer in the directories setting; left unrestored"
                )),
            }
        }
        Ok(out)
    }
}

backstop_sdk::export_plugin!(CustomDirs);
