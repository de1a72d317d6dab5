//! A progress bar with its step and bytes, announced to screen readers.

use leptos::prelude::*;

use crate::model::{ProgressView, format_bytes};

#[component]
pub fn ProgressBar(progress: ProgressView) -> impl IntoView {
    let pct = if progress.total_bytes > 0 {
        (progress.done_bytes.saturating_mul(100) / progress.total_bytes).min(100)
    } else {
        0
    };
    let step = progress.step.clone().unwrap_or_else(|| "starting".into());
    let label = if progress.total_bytes > 0 {
        format!("{step}: {} of {}", format_bytes(progress.done_bytes as i64), format_bytes(progress.total_bytes as i64))
    } else {
        step.clone()
    };
    view! {
        <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct.to_string() aria-label=label.clone()>
            <div class="progress-fill" style=format!("width: {pct}%")></div>
        </div>
        <div class="progress-label">{label}</div>
    }
}
