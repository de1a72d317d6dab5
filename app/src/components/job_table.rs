//! The history table: one row per job, a progress bar while it runs, icon buttons for its
//! actions, an expandable row with the error and warnings, and under a backup's name its
//! copies to the destinations (a failed one with its reason and a Retry button). A lock
//! marks an encrypted archive (`NAME.tar.gz.age`) and an encrypted copy; the Restore
//! confirm of an encrypted archive says which key will open it.
//!
//! Rows are keyed by job id and read their job reactively, so a progress event updates a
//! few text nodes in place instead of rebuilding the row: keyboard focus and an open
//! tooltip survive a running job's updates. The table uses a fixed layout (column widths in
//! the CSS), so a status change never moves a column.

use leptos::prelude::*;

use crate::components::confirm_dialog::{Confirm, ConfirmAction};
use crate::components::local_time::LocalTime;
use crate::components::progress_bar::{ProgressBar, progress_text};
use crate::model::{CopyStatus, DestinationId, JobCopy, JobId, JobStatus, JobView, format_bytes};

fn trigger_label(t: &str) -> &'static str {
    match t {
        "manual" => "Manual",
        "scheduled" => "Scheduled",
        "upload" => "Upload",
        "pre-restore" => "Safety (pre-restore)",
        "import" => "Import",
        _ => "Other",
    }
}

/// Columns of the history, shared by the header and the details row's colspan.
const COLUMNS: usize = 8;

/// `message` is the page's status line (what a copy's Retry says).
#[component]
pub fn JobTable(
    jobs: RwSignal<Vec<JobView>>,
    confirm: RwSignal<Option<Confirm>>,
    message: RwSignal<Option<(bool, String)>>,
) -> impl IntoView {
    let expanded = RwSignal::new(None::<JobId>);
    let ids = Memo::new(move |_| jobs.with(|l| l.iter().map(|j| j.id).collect::<Vec<_>>()));
    view! {
        <div class="table-wrap">
            <table class="jobs">
                <thead>
                    <tr>
                        <th scope="col" class="col-type">"Type"</th>
                        <th scope="col" class="col-status">"Status"</th>
                        <th scope="col" class="col-trigger">"Trigger"</th>
                        <th scope="col" class="col-time">"Created"</th>
                        <th scope="col" class="col-time">"Finished"</th>
                        <th scope="col" class="col-size num">"Size"</th>
                        <th scope="col" class="col-by">"By"</th>
                        <th scope="col" class="col-actions">"Actions"</th>
                    </tr>
                </thead>
                <tbody>
                    <Show when=move || ids.with(|j| j.is_empty())>
                        <tr><td colspan=COLUMNS.to_string() class="empty">"No backups yet. Run one, or upload an archive."</td></tr>
                    </Show>
                    <For each=move || ids.get() key=|id| *id let:id>
                        <JobRow id=id jobs=jobs confirm=confirm expanded=expanded message=message/>
                    </For>
                </tbody>
            </table>
        </div>
    }
}

/// One field of the row's job, as its own signal (the default once the job is gone).
fn field<T>(job: Memo<Option<JobView>>, f: fn(&JobView) -> T) -> Memo<T>
where
    T: Clone + Default + PartialEq + Send + Sync + 'static,
{
    Memo::new(move |_| job.with(|j| j.as_ref().map(f).unwrap_or_default()))
}

#[component]
fn JobRow(
    id: JobId,
    jobs: RwSignal<Vec<JobView>>,
    confirm: RwSignal<Option<Confirm>>,
    expanded: RwSignal<Option<JobId>>,
    message: RwSignal<Option<(bool, String)>>,
) -> impl IntoView {
    let job = Memo::new(move |_| jobs.with(|l| l.iter().find(|j| j.id == id).cloned()));
    let status = field(job, |j| j.status.as_str().to_owned());
    let active = Memo::new(move |_| matches!(status.get().as_str(), "pending" | "running"));
    let failed = Memo::new(move |_| status.get() == "failed");
    let name = field(job, |j| {
        j.archive_name
            .clone()
            .or(j.original_filename.clone())
            .unwrap_or_else(|| format!("job {}", j.id))
    });
    let kind = field(job, |j| {
        if j.kind == crate::model::JobKind::Backup {
            "Backup"
        } else {
            "Restore"
        }
    });
    let trigger = field(job, |j| trigger_label(j.trigger.as_str()));
    let created = field(job, |j| Some(j.created_at.clone()));
    let finished = field(job, |j| j.finished_at.clone());
    let size = field(job, |j| {
        j.size_bytes.map(format_bytes).unwrap_or_else(|| "—".into())
    });
    let by = field(job, |j| {
        j.requested_by.clone().unwrap_or_else(|| "—".into())
    });
    let progress = field(job, |j| j.progress.clone());
    let error = field(job, |j| j.error.clone());
    let can_download = field(job, |j| j.can_download);
    let can_restore = field(job, |j| j.can_restore);
    let can_cancel = field(job, |j| j.can_cancel);
    let can_delete = field(job, |j| j.can_delete);
    let copies = field(job, |j| j.copies.clone());
    let encrypted = field(job, |j| j.encrypted);
    // Only a succeeded backup can be copied again (the engine refuses the others).
    let can_retry = Memo::new(move |_| status.get() == "succeeded");
    // The error is the tooltip of a failed job's badge (CSS shows data-tooltip on hover and
    // on keyboard focus); no `title` as well, or the browser shows a second, native tooltip.
    let tooltip = Memo::new(move |_| {
        failed
            .get()
            .then(|| format!("Failed: {}", error.get().unwrap_or_default()))
    });

    let ask = move |action: ConfirmAction| {
        let n = name.get_untracked();
        let k = kind.get_untracked().to_lowercase();
        let c = match action {
            ConfirmAction::Restore(id) if encrypted.get_untracked() => {
                // Which key opens it is the instance key as it is now: read when asked.
                leptos::task::spawn_local(async move {
                    let note = key_note(
                        crate::api::encryption::get_encryption()
                            .await
                            .map(|v| v.public_key)
                            .map_err(|e| e.to_string()),
                    );
                    confirm.set(Some(restore_confirm(id, &n, Some(note))));
                });
                return;
            }
            ConfirmAction::Restore(id) => restore_confirm(id, &n, None),
            ConfirmAction::Cancel(_) => Confirm {
                title: "Stop this job?".into(),
                body: format!(
                    "The {k} job for {n} stops at its next check; a stopped backup leaves no file behind."
                ),
                confirm_label: "Stop".into(),
                danger: true,
                action,
            },
            ConfirmAction::Delete(_) => Confirm {
                title: "Delete this job?".into(),
                body: format!(
                    "The record of {n} and its archive file (if any) are deleted for good."
                ),
                confirm_label: "Delete".into(),
                danger: true,
                action,
            },
        };
        confirm.set(Some(c));
    };

    view! {
        <tr class=move || format!("job-row status-{}", status.get()) data-job-id=id.to_string()>
            <td data-label="Type">
                <div class="cell-stack">
                    <span class="kind">{move || kind.get()}</span>
                    <span class="archive-line">
                        <span class="archive-name" title=move || name.get()>{move || name.get()}</span>
                        <Show when=move || encrypted.get()>
                            <Lock class="job-lock"/>
                        </Show>
                    </span>
                    <Show when=move || copies.with(|c| !c.is_empty())>
                        <ul class="copies" aria-label=move || format!("Copies of {}", name.get())>
                            {move || copies.get().into_iter().map(|c| view! {
                                <CopyBadge job=id copy=c can_retry=can_retry jobs=jobs message=message/>
                            }).collect_view()}
                        </ul>
                    </Show>
                </div>
            </td>
            <td data-label="Status">
                <div class="cell-stack">
                    <span class=move || format!("badge badge-{}", status.get())
                        data-tooltip=move || tooltip.get()
                        tabindex=move || if failed.get() { "0" } else { "-1" }>
                        {move || status.get()}
                    </span>
                    <Show when=move || active.get()>
                        <ProgressBar progress=progress/>
                    </Show>
                </div>
            </td>
            <td data-label="Trigger">{move || trigger.get()}</td>
            <td data-label="Created"><LocalTime iso=created/></td>
            <td data-label="Finished">
                // While the job runs, this column says how far it has got; the date replaces it.
                <Show when=move || active.get() fallback=move || view! { <LocalTime iso=finished/> }>
                    <span class="progress-label">{move || progress_text(&progress.get())}</span>
                </Show>
            </td>
            <td data-label="Size" class="num">{move || size.get()}</td>
            <td data-label="By">{move || by.get()}</td>
            <td data-label="Actions" class="actions">
                <div class="action-group">
                    <Show when=move || can_download.get()>
                        <a class="icon-btn" href=format!("/api/backups/jobs/{id}/download/") download=move || name.get()
                           aria-label=move || format!("Download {}", name.get()) data-tooltip="Download">
                            <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 3v12m0 0l-5-5m5 5l5-5M4 19h16"/></svg>
                        </a>
                    </Show>
                    <Show when=move || can_restore.get()>
                        <button class="icon-btn" aria-label=move || format!("Restore {}", name.get()) data-tooltip="Restore"
                            on:click=move |_| ask(ConfirmAction::Restore(id))>
                            <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 12a8 8 0 1 0 3-6.2M4 4v5h5"/></svg>
                        </button>
                    </Show>
                    <Show when=move || can_cancel.get()>
                        <button class="icon-btn" aria-label=format!("Stop job {id}") data-tooltip="Stop"
                            on:click=move |_| ask(ConfirmAction::Cancel(id))>
                            <svg viewBox="0 0 24 24" aria-hidden="true"><rect x="6" y="6" width="12" height="12" rx="1"/></svg>
                        </button>
                    </Show>
                    <Show when=move || can_delete.get()>
                        <button class="icon-btn" aria-label=move || format!("Delete {}", name.get()) data-tooltip="Delete"
                            on:click=move |_| ask(ConfirmAction::Delete(id))>
                            <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13"/></svg>
                        </button>
                    </Show>
                    // Every job has details: its error and warnings, and its plugin log.
                    <button class="icon-btn" aria-label=format!("Details of job {id}") data-tooltip="Details"
                        aria-controls=format!("job-details-{id}")
                        aria-expanded=move || (expanded.get() == Some(id)).to_string()
                        on:click=move |_| expanded.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>
                        <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 8v5m0 3v.5M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18"/></svg>
                    </button>
                </div>
            </td>
        </tr>
        <Show when=move || expanded.get() == Some(id)>
            <tr class="details-row" id=format!("job-details-{id}")>
                <td colspan=COLUMNS.to_string()>
                    {move || job.get().map(|j| view! {
                        {j.error.clone().map(|e| view! { <p class="error"><strong>"Error: "</strong>{e}</p> })}
                        {(j.warnings.is_empty() && j.annotations.is_empty() && j.error.is_none())
                            .then(|| view! { <p class="hint">"No warnings."</p> })}
                        <ul class="warnings">
                            {j.warnings.iter().map(|w| view! { <li>{w.clone()}</li> }).collect_view()}
                            {j.annotations.iter().map(|a| view! { <li>{format!("{} at {}: {}", a.plugin, a.step, a.text)}</li> }).collect_view()}
                        </ul>
                    })}
                    <PluginLog id=id status=status/>
                </td>
            </tr>
        </Show>
    }
    // Type-erased: the page's view type is otherwise deeper than the compiler allows.
    .into_any()
}

/// One copy of a job's archive: the destination's name and the copy's status, both in full
/// in its tooltip; a failed one's tooltip has the reason (shown on hover and on keyboard
/// focus, like a failed job's badge: `data-tooltip`, not `title`, so the browser does not
/// show a second, native tooltip) and, on a succeeded backup, a Retry button.
#[component]
fn CopyBadge(
    job: JobId,
    copy: JobCopy,
    can_retry: Memo<bool>,
    jobs: RwSignal<Vec<JobView>>,
    message: RwSignal<Option<(bool, String)>>,
) -> impl IntoView {
    let dest = copy.destination_id;
    let failed = copy.status == CopyStatus::Failed;
    let status = copy.status.as_str();
    // The full name too: the badge may cut it short.
    let tooltip = match copy.status {
        CopyStatus::Failed => format!(
            "Copy to {} failed: {}",
            copy.destination,
            copy.error.clone().unwrap_or_default()
        ),
        CopyStatus::Succeeded if copy.encrypted => {
            format!("Copied to {}, encrypted", copy.destination)
        }
        CopyStatus::Succeeded => format!("Copied to {}", copy.destination),
        CopyStatus::Running => format!("Copying to {}…", copy.destination),
        CopyStatus::Pending => format!("Waiting to copy to {}", copy.destination),
    };
    let name = copy.destination.clone();
    let label = format!("Retry the copy to {}", copy.destination);
    let retry = move |_| {
        let name = name.clone();
        leptos::task::spawn_local(async move {
            match crate::api::destinations::retry_copy(job, dest).await {
                Ok(answer) => {
                    jobs.update(|l| mark_retried(l, &answer, dest));
                    crate::components::modal::focus_fallback(&format!("#copy-{job}-{dest}"));
                    message.set(Some((true, format!("Copying job {job} to {name} again…"))));
                }
                Err(e) => message.set(Some((false, e.to_string()))),
            }
        });
    };
    view! {
        <li class=format!("copy copy-{status}") data-destination-id=dest.to_string()>
            <span class="copy-badge" id=format!("copy-{job}-{dest}") data-tooltip=tooltip
                tabindex=if failed { "0" } else { "-1" }>
                <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M7 18h10a4 4 0 0 0 .5-7.97A6 6 0 0 0 6.1 9.1 4.5 4.5 0 0 0 7 18z"/></svg>
                <span class="copy-name">{copy.destination.clone()}</span>
                <span class="copy-status">{status}</span>
                {copy.encrypted.then(|| view! { <Lock class="copy-lock"/> })}
            </span>
            {move || (failed && can_retry.get()).then(|| view! {
                <button class="btn btn-small copy-retry" aria-label=label.clone()
                    on:click=retry.clone()>"Retry"</button>
            })}
        </li>
    }
    .into_any()
}

/// The lock of an encrypted archive or copy, and its words for a screen reader.
#[component]
fn Lock(class: &'static str) -> impl IntoView {
    view! {
        <svg class=class viewBox="0 0 24 24" aria-hidden="true"><rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 4 0 0 1 8 0v3"/></svg>
        <span class="visually-hidden">", encrypted"</span>
    }
}

/// The Restore confirm of the archive `name`; `key_note` (an encrypted archive) says which
/// key will open it, as a paragraph of its own.
fn restore_confirm(id: JobId, name: &str, key_note: Option<String>) -> Confirm {
    let mut body = format!(
        "The current database and the directories held in {name} will be replaced by the archive's content. A safety backup of the current state is taken first; directories the archive does not hold stay as they are."
    );
    if let Some(note) = key_note {
        body.push_str("\n\n");
        body.push_str(&note);
    }
    Confirm {
        title: "Restore this backup?".into(),
        body,
        confirm_label: "Restore".into(),
        danger: true,
        action: ConfirmAction::Restore(id),
    }
}

/// What the Restore confirm of an encrypted archive says about the key: the engine opens a
/// stored `.age` archive with this instance's key (`public_key`: its public half, if there
/// is one, or why it could not be read).
fn key_note(public_key: Result<Option<String>, String>) -> String {
    match public_key {
        Ok(Some(k)) => format!(
            "This archive is encrypted; it will be decrypted with this instance's key ({}).",
            short_key(&k)
        ),
        Ok(None) => "This archive is encrypted, but this instance has no key, so the restore will fail. Import it with the key instead: download it, then Upload Archive with the key from your emergency kit.".to_owned(),
        Err(e) => format!(
            "This archive is encrypted; it will be decrypted with this instance's key (which could not be read just now: {e})."
        ),
    }
}

/// An age public key cut to its two ends (`age1qyqszqgp…x7k2e9`), enough to tell it from
/// another one next to the full key on the Encryption card.
fn short_key(key: &str) -> String {
    const HEAD: usize = 12;
    const TAIL: usize = 6;
    if key.len() <= HEAD + TAIL + 1 || !key.is_ascii() {
        return key.to_owned();
    }
    format!("{}…{}", &key[..HEAD], &key[key.len() - TAIL..])
}

/// Puts the answer of a Retry (the copy queued again) into the list, unless the event
/// stream already said more: the copy's own events can overtake the answer.
fn mark_retried(list: &mut [JobView], answer: &JobView, dest: DestinationId) {
    let Some(new) = answer.copies.iter().find(|c| c.destination_id == dest) else {
        return;
    };
    if let Some(slot) = list
        .iter_mut()
        .find(|j| j.id == answer.id)
        .and_then(|j| j.copies.iter_mut().find(|c| c.destination_id == dest))
        && slot.status == CopyStatus::Failed
    {
        *slot = new.clone();
    }
}

/// The plugin log of one job, loaded when its details open and again when its status
/// changes (a running job's log is complete once it ends).
#[component]
fn PluginLog(id: JobId, status: Memo<String>) -> impl IntoView {
    let lines = Resource::new(
        move || status.get(),
        move |_| crate::api::jobs::job_plugin_log(id),
    );
    view! {
        <section class="plugin-log" aria-label=format!("Plugin log of job {id}")>
            <h3>"Plugin log"</h3>
            <Suspense fallback=|| view! { <p class="hint">"Loading the plugin log…"</p> }>
                {move || Suspend::new(async move {
                    match lines.await {
                        Ok(lines) if lines.is_empty() => view! {
                            <p class="hint">"No plugin wrote anything for this job."</p>
                        }.into_any(),
                        Ok(lines) => view! {
                            <ol class="log-lines">
                                {lines.into_iter().map(|l| {
                                    let (class, at) = (format!("log-{}", l.level), l.at);
                                    view! {
                                    <li class=class>
                                        <LocalTime iso=Signal::derive(move || Some(at.clone()))/>
                                        " "<span class="log-plugin">{l.plugin}</span>
                                        " "<span class="log-level">{l.level}</span>
                                        " "<span class="log-message">{l.message}</span>
                                    </li>
                                }}).collect_view()}
                            </ol>
                        }.into_any(),
                        Err(e) => view! {
                            <p class="error" role="alert">{e.to_string()}</p>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// How far a job has got: a snapshot never replaces one that is further along.
fn stage(status: JobStatus) -> u8 {
    match status {
        JobStatus::Pending => 0,
        JobStatus::Running => 1,
        _ => 2,
    }
}

/// Inserts or replaces a job in a newest-first list.
///
/// Snapshots arrive by two roads (the event stream and the answer of the action that
/// started the job) in no fixed order: a fast job's "failed" event can come before the
/// "pending" answer of the Run Backup click. So an older status never overwrites a newer one.
pub fn upsert(list: &mut Vec<JobView>, job: JobView) {
    if let Some(slot) = list.iter_mut().find(|j| j.id == job.id) {
        if stage(job.status) >= stage(slot.status) {
            *slot = job;
        }
    } else {
        let pos = list
            .iter()
            .position(|j| j.id < job.id)
            .unwrap_or(list.len());
        list.insert(pos, job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, status: &str) -> JobView {
        serde_json::from_value(serde_json::json!({
            "id": id, "kind": "backup", "status": status, "trigger": "manual", "requested_by": null,
            "archive_name": null, "original_filename": null, "size_bytes": null, "sha256": null,
            "include_recordings": false, "progress": {"step": null, "done_bytes": 0, "total_bytes": 0},
            "error": null, "created_at": "2026-01-01T00:00:00Z", "started_at": null, "finished_at": null,
            "can_download": false, "can_restore": false, "can_cancel": false, "can_delete": false,
        }))
        .expect("a valid job")
    }

    #[test]
    fn the_restore_confirm_of_an_encrypted_archive_names_the_key_or_says_there_is_none() {
        let key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        assert_eq!(short_key(key), "age1ql3z7hjy…mcac8p");
        assert_eq!(short_key("age1short"), "age1short");
        let plain = restore_confirm(JobId(7), "b.tar.gz", None);
        assert!(!plain.body.contains("encrypted"), "{}", plain.body);
        let with_key = restore_confirm(
            JobId(7),
            "b.tar.gz.age",
            Some(key_note(Ok(Some(key.into())))),
        );
        assert!(
            with_key.body.ends_with("\n\nThis archive is encrypted; it will be decrypted with this instance's key (age1ql3z7hjy…mcac8p)."),
            "{}",
            with_key.body
        );
        assert!(key_note(Ok(None)).contains("this instance has no key, so the restore will fail"));
        assert_eq!(with_key.action, ConfirmAction::Restore(JobId(7)));
    }

    #[test]
    fn upsert_keeps_newest_first_and_never_goes_back_in_status() {
        let mut l = vec![job(3, "running"), job(1, "succeeded")];
        upsert(&mut l, job(2, "pending"));
        assert_eq!(l.iter().map(|j| j.id.get()).collect::<Vec<_>>(), [3, 2, 1]);
        upsert(&mut l, job(2, "failed"));
        upsert(&mut l, job(2, "pending")); // the late answer of the click that started it
        assert_eq!(l[1].status, JobStatus::Failed);
        upsert(&mut l, job(3, "succeeded"));
        assert_eq!(l[0].status, JobStatus::Succeeded);
    }

    fn with_copy(id: i64, status: &str) -> JobView {
        let mut j = job(id, "succeeded");
        j.copies = vec![
            serde_json::from_value(serde_json::json!({
                "destination_id": 4, "destination": "nas", "status": status, "error": null,
                "size_bytes": null, "sha256": null, "finished_at": null,
            }))
            .expect("a valid copy"),
        ];
        j
    }

    #[test]
    fn a_retry_answer_never_overwrites_what_the_event_stream_said_since() {
        let dest = DestinationId(4);
        let mut l = vec![with_copy(1, "failed")];
        mark_retried(&mut l, &with_copy(1, "pending"), dest);
        assert_eq!(l[0].copies[0].status, CopyStatus::Pending);
        // The copy's own events came first: the late answer changes nothing.
        let mut l = vec![with_copy(1, "succeeded")];
        mark_retried(&mut l, &with_copy(1, "pending"), dest);
        assert_eq!(l[0].copies[0].status, CopyStatus::Succeeded);
    }
}
