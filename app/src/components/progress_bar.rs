//! A progress bar with its step and bytes, announced to screen readers.

use leptos::prelude::*;

use crate::model::{ProgressView, format_bytes};

/// Percent done, 0 while the total is unknown.
pub fn percent(p: &ProgressView) -> u64 {
    p.done_bytes
        .saturating_mul(100)
        .checked_div(p.total_bytes)
        .map_or(0, |v| v.min(100))
}

/// "archive: 102.0 MiB of 1.2 GiB", or just the step while the total is unknown.
pub fn progress_text(p: &ProgressView) -> String {
    let step = p.step.clone().unwrap_or_else(|| "starting".into());
    if p.total_bytes > 0 {
        format!(
            "{step}: {} of {}",
            format_bytes(p.done_bytes as i64),
            format_bytes(p.total_bytes as i64)
        )
    } else {
        step
    }
}

/// The bar alone; the caller places [`progress_text`] where it fits its layout.
#[component]
pub fn ProgressBar(#[prop(into)] progress: Signal<ProgressView>) -> impl IntoView {
    let pct = move || percent(&progress.get());
    view! {
        <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100"
             aria-valuenow=move || pct().to_string() aria-valuetext=move || progress_text(&progress.get())>
            <div class="progress-fill" style=move || format!("width: {}%", pct())></div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_and_text_handle_an_unknown_total() {
        let p = ProgressView {
            step: Some("dump".into()),
            done_bytes: 10,
            total_bytes: 0,
        };
        assert_eq!(percent(&p), 0);
        assert_eq!(progress_text(&p), "dump");
        let p = ProgressView {
            step: Some("archive".into()),
            done_bytes: 512,
            total_bytes: 1024,
        };
        assert_eq!(percent(&p), 50);
        assert_eq!(progress_text(&p), "archive: 512 B of 1.0 KiB");
    }
}
