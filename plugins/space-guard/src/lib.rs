//! `space-guard`: a pre-backup gate. It vetoes a backup when the estimated archive would
//! not fit the free space of the backup folder (with a safety margin), so a backup never
//! fills the disk halfway through. WASI has no `statvfs`, so the numbers come from the
//! job's facts (`free_bytes`, `estimated_bytes`) that the engine supplies at the gates.

use backstop_sdk::{HookContext, HookOutcome, HookPoint, Plugin};

struct SpaceGuard;

fn setting(key: &str, default: u64) -> u64 {
    backstop_sdk::config(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn fact(ctx: &HookContext, key: &str) -> Option<u64> {
    backstop_sdk::fact(&ctx.job, key).and_then(|v| v.parse().ok())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Plugin for SpaceGuard {
    fn on_hook(ctx: HookContext) -> HookOutcome {
        if !matches!(ctx.point, HookPoint::PreBackup | HookPoint::PreArchive) {
            return HookOutcome::Proceed(Vec::new());
        }
        let (Some(free), Some(estimated)) = (fact(&ctx, "free_bytes"), fact(&ctx, "estimated_bytes")) else {
            backstop_sdk::info("free_bytes or estimated_bytes unknown at this step; not checked");
            return HookOutcome::Proceed(Vec::new());
        };
        let margin = setting("margin_percent", 10);
        let reserve = setting("reserve_mb", 0).saturating_mul(1024 * 1024);
        let needed = estimated.saturating_add(estimated.saturating_mul(margin) / 100).saturating_add(reserve);
        let folder = backstop_sdk::fact(&ctx.job, "archive_dir").unwrap_or("the backup folder");
        if needed > free {
            return HookOutcome::Veto(format!(
                "not enough free space in {folder}: the backup needs about {} (estimate {} + {margin}% margin + {} reserve) but only {} is free",
                mib(needed),
                mib(estimated),
                mib(reserve),
                mib(free)
            ));
        }
        backstop_sdk::info(&format!("{} free in {folder}, about {} needed", mib(free), mib(needed)));
        HookOutcome::Proceed(Vec::new())
    }
}

backstop_sdk::export_plugin!(SpaceGuard);
