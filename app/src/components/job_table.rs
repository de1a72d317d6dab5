//! The history table: one row per job, a progress bar while it runs, icon buttons for its
//! actions, and an expandable row with the error and warnings.

use leptos::prelude::*;

use crate::components::confirm_dialog::{Confirm, ConfirmAction};
use crate::components::local_time::LocalTime;
use crate::components::progress_bar::ProgressBar;
use crate::model::{JobView, format_bytes};

fn trigger_label(t: &str) -> &'static str {
    match t {
        "manual" => "Manual",
        "scheduled" => "Scheduled",
        "upload" => "Upload",
        "pre-restore" => "Safety (pre-restore)",
        _ => "Other",
    }
}

#[component]
pub fn JobTable(jobs: RwSignal<Vec<JobView>>, confirm: RwSignal<Option<Confirm>>) -> impl IntoView {
    let expanded = RwSignal::new(None::<i64>);
    view! {
        <div class="table-wrap">
            <table class="jobs">
                <thead>
                    <tr>
                        <th scope="col">"Type"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Trigger"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Finished"</th>
                        <th scope="col" class="num">"Size"</th>
                        <th scope="col">"By"</th>
                        <th scope="col" class="actions-col">"Actions"</th>
                    </tr>
                </thead>
                <tbody>
                    <Show when=move || jobs.with(|j| j.is_empty())>
                        <tr><td colspan="8" class="empty">"No backups yet. Run one, or upload an archive."</td></tr>
                    </Show>
                    <For each=move || jobs.get() key=|j| (j.id, j.status.clone(), j.progress.done_bytes, j.progress.step.clone(), j.can_cancel) let:job>
                        <JobRow job=job confirm=confirm expanded=expanded/>
                    </For>
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn JobRow(job: JobView, confirm: RwSignal<Option<Confirm>>, expanded: RwSignal<Option<i64>>) -> impl IntoView {
    let id = job.id;
    let running = job.status == "running" || job.status == "pending";
    let failed = job.status == "failed";
    let has_details = failed || !job.warnings.is_empty() || !job.annotations.is_empty() || job.status == "canceled";
    let name = job.archive_name.clone().or(job.original_filename.clone()).unwrap_or_else(|| format!("job {id}"));
    let kind_label = if job.kind == "backup" { "Backup" } else { "Restore" };
    let error = job.error.clone().unwrap_or_default();
    let status_title = if failed { format!("Failed: {error}") } else { job.status.clone() };
    let size = job.size_bytes.map(format_bytes).unwrap_or_else(|| "—".into());
    let job_for_details = job.clone();
    let name_restore = name.clone();
    let name_delete = name.clone();
    let name_cancel = name.clone();
    view! {
        <tr class=format!("job-row status-{}", job.status) data-job-id=id.to_string()>
            <td data-label="Type">
                <span class="kind">{kind_label}</span>
                <span class="archive-name" title=name.clone()>{name.clone()}</span>
            </td>
            <td data-label="Status">
                <span class=format!("badge badge-{}", job.status) title=status_title.clone() data-tooltip=if failed { Some(status_title.clone()) } else { None } tabindex=if failed { "0" } else { "-1" }>
                    {job.status.clone()}
                </span>
                {running.then(|| view! { <ProgressBar progress=job.progress.clone()/> })}
            </td>
            <td data-label="Trigger">{trigger_label(&job.trigger)}</td>
            <td data-label="Created"><LocalTime iso=Some(job.created_at.clone())/></td>
            <td data-label="Finished"><LocalTime iso=job.finished_at.clone()/></td>
            <td data-label="Size" class="num">{size}</td>
            <td data-label="By">{job.requested_by.clone().unwrap_or_else(|| "—".into())}</td>
            <td data-label="Actions" class="actions">
                {job.can_download.then(|| view! {
                    <a class="icon-btn" href=format!("/api/backups/jobs/{id}/download/") download=name.clone()
                       aria-label=format!("Download {name}") data-tooltip="Download">
                        <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 3v12m0 0l-5-5m5 5l5-5M4 19h16"/></svg>
                    </a>
                })}
                {job.can_restore.then(|| view! {
                    <button class="icon-btn" aria-label=format!("Restore {name_restore}") data-tooltip="Restore"
                        on:click=move |_| confirm.set(Some(Confirm {
                            title: "Restore this backup?".into(),
                            body: format!("The current database and the directories held in {name_restore} will be replaced by the archive's content. A safety backup of the current state is taken first; directories the archive does not hold stay as they are."),
                            confirm_label: "Restore".into(),
                            danger: true,
                            action: ConfirmAction::Restore(id),
                        }))>
                        <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 12a8 8 0 1 0 3-6.2M4 4v5h5"/></svg>
                    </button>
                })}
                {job.can_cancel.then(|| view! {
                    <button class="icon-btn" aria-label=format!("Stop job {id}") data-tooltip="Stop"
                        on:click=move |_| confirm.set(Some(Confirm {
                            title: "Stop this job?".into(),
                            body: format!("The {} job for {name_cancel} stops at its next check; a stopped backup leaves no file behind.", kind_label.to_lowercase()),
                            confirm_label: "Stop".into(),
                            danger: true,
                            action: ConfirmAction::Cancel(id),
                        }))>
                        <svg viewBox="0 0 24 24" aria-hidden="true"><rect x="6" y="6" width="12" height="12" rx="1"/></svg>
                    </button>
                })}
                {job.can_delete.then(|| view! {
                    <button class="icon-btn" aria-label=format!("Delete {name_delete}") data-tooltip="Delete"
                        on:click=move |_| confirm.set(Some(Confirm {
                            title: "Delete this job?".into(),
                            body: format!("The record of {name_delete} and its archive file (if any) are deleted for good."),
                            confirm_label: "Delete".into(),
                            danger: true,
                            action: ConfirmAction::Delete(id),
                        }))>
                        <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13"/></svg>
                    </button>
                })}
                {has_details.then(|| view! {
                    <button class="icon-btn" aria-label=format!("Details of job {id}") data-tooltip="Details"
                        aria-expanded=move || (expanded.get() == Some(id)).to_string()
                        on:click=move |_| expanded.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>
                        <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 8v5m0 3v.5M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18"/></svg>
                    </button>
                })}
            </td>
        </tr>
        <Show when=move || expanded.get() == Some(id)>
            <tr class="details-row">
                <td colspan="8">
                    {job_for_details.error.clone().map(|e| view! { <p class="error"><strong>"Error: "</strong>{e}</p> })}
                    <ul class="warnings">
                        {job_for_details.warnings.iter().map(|w| view! { <li>{w.clone()}</li> }).collect_view()}
                        {job_for_details.annotations.iter().map(|a| view! { <li>{format!("{} at {}: {}", a.plugin, a.step, a.text)}</li> }).collect_view()}
                    </ul>
                </td>
            </tr>
        </Show>
    }
}
