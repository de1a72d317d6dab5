//! The Backups page: settings, Run Backup, Upload, the destinations that get a copy of
//! every backup, encryption and its key, and the live history.

use leptos::prelude::*;

use crate::components::auth_gate::AuthGate;
use crate::components::confirm_dialog::{Confirm, ConfirmAction, ConfirmDialog};
use crate::components::job_table::{JobTable, upsert};
use crate::model::JobView;

/// Jobs per history page.
pub const PAGE_SIZE: i64 = 20;

#[component]
pub fn BackupsPage() -> impl IntoView {
    view! {
        <h1>"Backups"</h1>
        <AuthGate admin_only=true>
            <BackupsContent/>
        </AuthGate>
    }
}

#[component]
fn BackupsContent() -> impl IntoView {
    let offset = RwSignal::new(0i64);
    let jobs = RwSignal::new(Vec::<JobView>::new());
    let total = RwSignal::new(0i64);
    let message = RwSignal::new(None::<(bool, String)>);
    let confirm = RwSignal::new(None::<Confirm>);
    let reload = RwSignal::new(0u32);

    let page = Resource::new(
        move || (offset.get(), reload.get()),
        |(off, _)| crate::api::jobs::list_jobs(PAGE_SIZE, off),
    );
    Effect::new(move |_| {
        if let Some(Ok(p)) = page.get() {
            jobs.set(p.jobs);
            total.set(p.total);
        }
    });

    // Live status: the event stream pushes every job change; reconnects on its own.
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        live::connect(jobs, total, offset, reload);
    });

    let include_recordings = RwSignal::new(false);
    let run = ServerAction::<crate::api::jobs::RunBackup>::new();
    Effect::new(move |_| match run.value().get() {
        Some(Ok(job)) => {
            message.set(Some((true, format!("Backup job {} queued.", job.id))));
            if offset.get_untracked() == 0 {
                jobs.update(|l| upsert(l, job));
            }
        }
        Some(Err(e)) => message.set(Some((false, e.to_string()))),
        None => {}
    });

    let on_confirm = Callback::new(move |action: ConfirmAction| {
        leptos::task::spawn_local(async move {
            let result = match action {
                ConfirmAction::Delete(id) => crate::api::jobs::delete_job(id).await.map(|_| {
                    jobs.update(|l| l.retain(|j| j.id != id));
                    // The focused Delete button went with its row.
                    crate::components::modal::focus_fallback("#history-title");
                    format!("Job {id} deleted.")
                }),
                ConfirmAction::Cancel(id) => crate::api::jobs::cancel_job(id).await.map(|j| {
                    jobs.update(|l| upsert(l, j));
                    format!("Stopping job {id}…")
                }),
                ConfirmAction::Restore(id) => crate::api::jobs::restore_job(id).await.map(|j| {
                    let rid = j.id;
                    jobs.update(|l| upsert(l, j));
                    format!("Restore job {rid} queued; a safety backup runs first.")
                }),
            };
            match result {
                Ok(m) => message.set(Some((true, m))),
                Err(e) => message.set(Some((false, e.to_string()))),
            }
        });
    });

    view! {
        <crate::components::settings_form::SettingsForm include_recordings_default=include_recordings/>
        <section class="card run">
            <h2>"Back up now"</h2>
            <div class="run-row">
                <label class="switch">
                    <input type="checkbox" id="run-include-recordings"
                        prop:checked=move || include_recordings.get()
                        on:change=move |ev| include_recordings.set(event_target_checked(&ev))/>
                    <span>"Include recordings"</span>
                </label>
                <button class="btn btn-primary" id="run-backup" disabled=move || run.pending().get()
                    on:click=move |_| { run.dispatch(crate::api::jobs::RunBackup { include_recordings: include_recordings.get_untracked() }); }>
                    "Run Backup"
                </button>
                <crate::components::upload_dialog::UploadButton jobs=jobs message=message/>
            </div>
            <p class="status-line" role="status" aria-live="polite">
                {move || message.get().map(|(ok, m)| view! { <span class=if ok { "ok" } else { "error" }>{m}</span> })}
            </p>
        </section>
        <crate::components::destinations::DestinationsCard jobs=jobs/>
        <crate::components::encryption::EncryptionCard/>
        <section class="card history">
            <div class="history-head">
                <h2 id="history-title" tabindex="-1">"History"</h2>
                <span class="count">{move || match total.get() { 1 => "1 job".to_owned(), n => format!("{n} jobs") }}</span>
            </div>
            <JobTable jobs=jobs confirm=confirm message=message/>
            <nav class="pager" aria-label="History pages">
                <button class="btn" disabled=move || offset.get() == 0
                    on:click=move |_| offset.update(|o| *o = (*o - PAGE_SIZE).max(0))>"Newer"</button>
                <span>{move || {
                    let t = total.get();
                    let o = offset.get();
                    if t == 0 { "—".to_owned() } else { format!("{}–{} of {}", o + 1, (o + PAGE_SIZE).min(t), t) }
                }}</span>
                <button class="btn" disabled=move || { offset.get() + PAGE_SIZE >= total.get() }
                    on:click=move |_| offset.update(|o| *o += PAGE_SIZE)>"Older"</button>
            </nav>
        </section>
        <ConfirmDialog state=confirm on_confirm=on_confirm/>
    }
}

#[cfg(feature = "hydrate")]
mod live {
    //! The browser side of `GET /api/backups/events/`.
    use leptos::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    use crate::model::JobView;

    pub fn connect(
        jobs: RwSignal<Vec<JobView>>,
        total: RwSignal<i64>,
        offset: RwSignal<i64>,
        reload: RwSignal<u32>,
    ) {
        let Ok(es) = web_sys::EventSource::new("/api/backups/events/") else {
            return;
        };
        let on_job =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                let Some(text) = ev.data().as_string() else {
                    return;
                };
                let Ok(job) = serde_json::from_str::<JobView>(&text) else {
                    return;
                };
                let known = jobs.with_untracked(|l| l.iter().any(|j| j.id == job.id));
                if known || offset.get_untracked() == 0 {
                    if !known {
                        total.update(|t| *t += 1);
                    }
                    jobs.update(|l| {
                        crate::components::job_table::upsert(l, job);
                        l.truncate(super::PAGE_SIZE as usize);
                    });
                }
            });
        let on_deleted =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                let Some(text) = ev.data().as_string() else {
                    return;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    return;
                };
                if let Some(id) = v
                    .get("id")
                    .and_then(|i| i.as_i64())
                    .map(crate::model::JobId)
                {
                    let had = jobs.with_untracked(|l| l.iter().any(|j| j.id == id));
                    jobs.update(|l| l.retain(|j| j.id != id));
                    if had {
                        total.update(|t| *t = (*t - 1).max(0));
                    }
                }
            });
        // After a reconnect (server restart) or a lag notice, reload the page of history.
        let opened = std::cell::Cell::new(false);
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if opened.replace(true) {
                reload.update(|r| *r += 1);
            }
        });
        let on_resync =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| reload.update(|r| *r += 1));
        let _ = es.add_event_listener_with_callback("job", on_job.as_ref().unchecked_ref());
        let _ = es.add_event_listener_with_callback("deleted", on_deleted.as_ref().unchecked_ref());
        let _ = es.add_event_listener_with_callback("resync", on_resync.as_ref().unchecked_ref());
        es.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        // The page owns the stream for its lifetime; close it when the page goes away.
        on_job.forget();
        on_deleted.forget();
        on_resync.forget();
        on_open.forget();
        let es = send_wrapper::SendWrapper::new(es);
        on_cleanup(move || es.close());
    }
}
