//! The Backstop plugin SDK for Rust: the `backstop:plugin@0.1.0` bindings, a [`Plugin`]
//! trait whose methods all have harmless defaults, and small helpers for the host imports.
//!
//! ```ignore
//! struct Hello;
//! impl backstop_sdk::Plugin for Hello {
//!     fn on_hook(ctx: backstop_sdk::HookContext) -> backstop_sdk::HookOutcome {
//!         backstop_sdk::info(&format!("job {} at {:?}", ctx.job.job_id, ctx.point));
//!         backstop_sdk::HookOutcome::Proceed(vec![])
//!     }
//! }
//! backstop_sdk::export_plugin!(Hello);
//! ```
//!
//! The component always exports all three interfaces (`contributor`, `restorer`, `hooks`);
//! `exports` in `plugin.toml` says which of them the host calls.

/// The raw bindings generated from `plugins/wit/backstop.wit` (world `plugin`).
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "backstop_sdk::bindings",
    });
}

pub use bindings::backstop::plugin::types::{
    Contribution, DirectoryContribution, HookContext, HookOutcome, HookPoint, InlineBlob,
    JobContext, LogLevel, Placement, RestoreRequest, ScratchFile,
};

/// A plugin. Override what you need; the defaults contribute nothing, proceed at every hook
/// and restore nothing.
pub trait Plugin {
    /// Content for a backup (DESIGN section 7): directories beneath a mount, files in
    /// `/scratch`, or small inline blobs. An `Err` fails this plugin's call only.
    fn collect(_ctx: JobContext) -> Result<Vec<Contribution>, String> {
        Ok(Vec::new())
    }
    /// Runs at every hook point. A veto counts only at gates and with the `veto` grant.
    fn on_hook(_ctx: HookContext) -> HookOutcome {
        HookOutcome::Proceed(Vec::new())
    }
    /// Where this plugin's `data/<name>/` directories go back (called before any change).
    fn plan_restore(_req: RestoreRequest) -> Result<Vec<Placement>, String> {
        Ok(Vec::new())
    }
    /// Puts the plugin's own `plugins/<id>/` files back (called after the swap).
    fn restore(_req: RestoreRequest) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// Exports a [`Plugin`] implementation as the component's `contributor`, `restorer` and
/// `hooks` interfaces. Call it once, at the crate root of a `cdylib`.
#[macro_export]
macro_rules! export_plugin {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __BackstopExport;
        impl $crate::bindings::exports::backstop::plugin::contributor::Guest for __BackstopExport {
            fn collect(
                ctx: $crate::JobContext,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Contribution>, ::std::string::String> {
                <$t as $crate::Plugin>::collect(ctx)
            }
        }
        impl $crate::bindings::exports::backstop::plugin::restorer::Guest for __BackstopExport {
            fn plan(
                req: $crate::RestoreRequest,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Placement>, ::std::string::String> {
                <$t as $crate::Plugin>::plan_restore(req)
            }
            fn restore(
                req: $crate::RestoreRequest,
            ) -> ::core::result::Result<::std::vec::Vec<::std::string::String>, ::std::string::String> {
                <$t as $crate::Plugin>::restore(req)
            }
        }
        impl $crate::bindings::exports::backstop::plugin::hooks::Guest for __BackstopExport {
            fn on_hook(ctx: $crate::HookContext) -> $crate::HookOutcome {
                <$t as $crate::Plugin>::on_hook(ctx)
            }
        }
        $crate::bindings::export_raw!(__BackstopExport with_types_in $crate::bindings);
    };
}

use bindings::backstop::plugin::host;

/// Appends a line to this plugin's log for the current job.
pub fn log(level: LogLevel, message: &str) {
    host::log(level, message);
}
/// [`log`] at info level.
pub fn info(message: &str) {
    host::log(LogLevel::Info, message);
}
/// [`log`] at warn level.
pub fn warn(message: &str) {
    host::log(LogLevel::Warn, message);
}
/// One setting as the admin saved it: JSON text for arrays, objects, numbers and booleans,
/// the bare text for strings; `None` when unset.
pub fn config(key: &str) -> Option<String> {
    host::config_get(key)
}
/// Reports progress of the current call.
pub fn progress(done: u64, total: u64) {
    host::progress(done, total);
}
/// True once the job was canceled.
pub fn cancelled() -> bool {
    host::cancelled()
}

/// The hook point's name as in the API and manifests: `pre-backup`, `post-collect`, ...
pub fn point_name(p: HookPoint) -> &'static str {
    match p {
        HookPoint::PreBackup => "pre-backup",
        HookPoint::PostCollect => "post-collect",
        HookPoint::PreArchive => "pre-archive",
        HookPoint::PostArchive => "post-archive",
        HookPoint::PostBackup => "post-backup",
        HookPoint::PreRestore => "pre-restore",
        HookPoint::PostExtract => "post-extract",
        HookPoint::PreApply => "pre-apply",
        HookPoint::PostRestore => "post-restore",
    }
}

/// The value of `key` among the job's facts.
pub fn fact<'a>(ctx: &'a JobContext, key: &str) -> Option<&'a str> {
    ctx.facts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
