//! Upload Archive: pick a file, watch the upload progress, read the archive's manifest
//! summary, then confirm the restore (a safety backup is taken first).
//!
//! An encrypted archive (`NAME.tar.gz.age`, DESIGN section 11) first asks for its key: the
//! field is optional, since an archive this install made opens with its own key, and is sent
//! (the multipart field `identity`) only when filled. A refusal (a different key, a damaged
//! file) is shown like any other, with "Try another key" for the same file.

use leptos::prelude::*;

use crate::components::local_time::LocalTime;
use crate::components::modal::Modal;
use crate::model::{JobView, format_bytes};

/// What the dialog shows. (Only the browser build moves between stages.)
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Clone, Debug, PartialEq)]
enum Stage {
    Closed,
    /// An encrypted archive was picked: the key field, before anything is sent.
    Key {
        name: String,
    },
    Uploading {
        name: String,
        done: f64,
        total: f64,
    },
    Review {
        job: Box<JobView>,
        manifest: Box<crate::model::Manifest>,
    },
    Failed {
        message: String,
        /// The refusal was about the key of this (encrypted) file: offer the key field
        /// again for the same file.
        retry_key: Option<String>,
    },
}

impl Stage {
    fn failed(message: impl Into<String>) -> Self {
        Stage::Failed {
            message: message.into(),
            retry_key: None,
        }
    }
}

/// Whether a file's name says it is an age file (the server looks at its content; this only
/// decides whether to ask for a key first). (Only the browser build picks files.)
#[cfg_attr(not(any(feature = "hydrate", test)), allow(dead_code))]
fn is_age_name(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".age")
}

/// What to send for what was typed into a [`SecretKeyField`]: nothing when it is blank,
/// else the text, trimmed. The server finds the key in it (a key line, a whole kit, or a
/// kit whose line breaks a one-line field removed) or says what is wrong with it.
pub fn secret_key_in(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The field for an age secret key (Upload Archive's, and Import's in Browse copies): a
/// password field, so the secret is not shown, with its hint; read it with
/// [`secret_key_in`].
#[component]
pub fn SecretKeyField(
    id: &'static str,
    label: &'static str,
    hint: &'static str,
    value: RwSignal<String>,
    /// Takes focus when its dialog opens.
    #[prop(optional)]
    autofocus: bool,
) -> impl IntoView {
    let hint_id = format!("hint-{id}");
    view! {
        <label for=id>{label}</label>
        <input id=id type="password" autocomplete="off" spellcheck="false"
            placeholder="AGE-SECRET-KEY-1…" data-autofocus=autofocus.then_some("")
            prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))
            aria-describedby=hint_id.clone()/>
        <span class="hint" id=hint_id>{hint}</span>
    }
}

#[component]
pub fn UploadButton(
    jobs: RwSignal<Vec<JobView>>,
    message: RwSignal<Option<(bool, String)>>,
) -> impl IntoView {
    let stage = RwSignal::new(Stage::Closed);
    let input = NodeRef::<leptos::html::Input>::new();
    // The key typed for an encrypted archive; cleared once sent (a secret does not linger).
    let identity = RwSignal::new(String::new());

    let on_pick = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let Some(el) = input.get() else { return };
            let Some(file) = el.files().and_then(|f| f.get(0)) else {
                return;
            };
            el.set_value("");
            let name = file.name();
            upload::pick(file);
            if is_age_name(&name) {
                identity.set(String::new());
                stage.set(Stage::Key { name });
            } else {
                upload::start(None, stage, jobs);
            }
        }
    };
    let send_with_key = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key = secret_key_in(&identity.get_untracked());
        identity.set(String::new());
        #[cfg(feature = "hydrate")]
        upload::start(key, stage, jobs);
        #[cfg(not(feature = "hydrate"))]
        let _ = key;
    };
    let restore = move |id: crate::model::JobId| {
        leptos::task::spawn_local(async move {
            match crate::api::jobs::restore_job(id).await {
                Ok(j) => {
                    let rid = j.id;
                    jobs.update(|l| crate::components::job_table::upsert(l, j));
                    message.set(Some((
                        true,
                        format!("Restore job {rid} queued; a safety backup runs first."),
                    )));
                    stage.set(Stage::Closed);
                }
                Err(e) => stage.set(Stage::failed(e.to_string())),
            }
        });
    };

    // Focus goes back to the Upload Archive button when the flow ends, whichever stage it ends in.
    const RETURN_TO: &str = "label[for='upload-input']";
    let close = Callback::new(move |()| {
        #[cfg(feature = "hydrate")]
        upload::forget();
        stage.set(Stage::Closed);
    });
    // An upload in flight is not dismissed by Escape or a click outside (it would keep going
    // unseen); its Cancel button aborts it, and the server discards the partial file.
    let ignore = Callback::new(|()| {});

    view! {
        <label class="btn" for="upload-input" tabindex="0"
            on:keydown=move |ev| if ev.key() == "Enter" || ev.key() == " " {
                ev.prevent_default();
                if let Some(i) = input.get() { i.click(); }
            }>
            "Upload Archive"
        </label>
        <input id="upload-input" class="visually-hidden" type="file" accept=".tar.gz,.tgz,.age,application/gzip" node_ref=input on:change=on_pick/>
        {move || match stage.get() {
            Stage::Closed => ().into_any(),
            Stage::Key { name } => view! {
                <Modal labelledby="upload-key-title" id="upload-key" on_close=close return_to=RETURN_TO>
                    <h2 id="upload-key-title">"Upload "{name}</h2>
                    <p class="modal-body">"This archive is encrypted. An archive this install made opens with its own key: leave the field empty."</p>
                    <form class="upload-key" novalidate on:submit=send_with_key>
                        <div class="field">
                            <SecretKeyField id="upload-identity" label="Key for encrypted archives" value=identity autofocus=true
                                hint="Only for a .age archive from another install: paste the AGE-SECRET-KEY-1… line or the whole emergency kit."/>
                        </div>
                        <div class="modal-actions">
                            <button type="button" class="btn" on:click=move |_| close.run(())>"Cancel"</button>
                            <button type="submit" class="btn btn-primary" id="start-upload">"Upload"</button>
                        </div>
                    </form>
                </Modal>
            }.into_any(),
            Stage::Uploading { name, done, total } => {
                let pct = if total > 0.0 { (done / total * 100.0).min(100.0) } else { 0.0 };
                view! {
                    <Modal labelledby="upload-title" on_close=ignore return_to=RETURN_TO>
                        <h2 id="upload-title">"Uploading "{name}</h2>
                        <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{pct:.0}")>
                            <div class="progress-fill" style=format!("width: {pct:.1}%")></div>
                        </div>
                        <p class="progress-label" id="upload-progress">{format!("{} of {} ({pct:.0}%)", format_bytes(done as i64), format_bytes(total as i64))}</p>
                        <div class="modal-actions">
                            <button class="btn" id="cancel-upload" on:click=move |_| {
                                #[cfg(feature = "hydrate")]
                                upload::abort();
                                stage.set(Stage::Closed);
                                message.set(Some((true, "Upload canceled; nothing was stored.".into())));
                            }>"Cancel upload"</button>
                        </div>
                    </Modal>
                }.into_any()
            }
            Stage::Review { job, manifest } => {
                let id = job.id;
                let dirs: Vec<String> = manifest.directories.iter().map(|d| format!(
                    "{} ({} files, {})", d.name, d.files, format_bytes(d.bytes as i64))).collect();
                let (rows, tables) = (manifest.database.rows, manifest.database.tables);
                let recordings = manifest.include_recordings;
                let app_version = manifest.app_version.clone();
                let trigger = manifest.trigger.clone();
                let created = Some(manifest.created_at.clone()).filter(|c| !c.is_empty());
                let total_bytes = manifest.totals.bytes as i64;
                view! {
                    <Modal labelledby="review-title" id="manifest-summary" on_close=close return_to=RETURN_TO>
                        <h2 id="review-title">"Restore this archive?"</h2>
                        <dl class="manifest">
                            <dt>"File"</dt><dd>{job.original_filename.clone().unwrap_or_default()}</dd>
                            <dt>"Created"</dt><dd><LocalTime iso=created/></dd>
                            <dt>"App version"</dt><dd>{app_version}</dd>
                            <dt>"Trigger"</dt><dd>{trigger}</dd>
                            <dt>"Database"</dt><dd>{format!("{tables} tables, {rows} rows")}</dd>
                            <dt>"Directories"</dt><dd>{if dirs.is_empty() { "none".to_owned() } else { dirs.join(", ") }}</dd>
                            <dt>"Recordings"</dt><dd>{if recordings { "included" } else { "not included: recordings/ stays as it is" }}</dd>
                            <dt>"Size"</dt><dd>{format!("{} archive, {} unpacked", format_bytes(job.size_bytes.unwrap_or(0)), format_bytes(total_bytes))}</dd>
                        </dl>
                        <p class="modal-body">"Restoring replaces the current database and the directories listed above. A safety backup of the current state is taken first, so you can go back."</p>
                        <div class="modal-actions">
                            <button class="btn" on:click=move |_| stage.set(Stage::Closed)>"Keep it for later"</button>
                            <button class="btn btn-danger" id="confirm-restore" on:click=move |_| restore(id)>"Restore now"</button>
                        </div>
                    </Modal>
                }.into_any()
            }
            Stage::Failed { message: msg, retry_key } => view! {
                <Modal labelledby="upload-failed-title" alert=true on_close=close return_to=RETURN_TO>
                    <h2 id="upload-failed-title">"Upload refused"</h2>
                    <p class="error" id="upload-error">{msg}</p>
                    <div class="modal-actions">
                        <button class="btn" on:click=move |_| close.run(())>"Close"</button>
                        {retry_key.map(|name| view! {
                            <button class="btn btn-primary" id="retry-key" data-autofocus=""
                                on:click=move |_| stage.set(Stage::Key { name: name.clone() })>
                                "Try another key"
                            </button>
                        })}
                    </div>
                </Modal>
            }.into_any(),
        }}
    }
}

#[cfg(feature = "hydrate")]
mod upload {
    //! XMLHttpRequest rather than fetch: it reports upload progress.
    use leptos::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    use super::Stage;
    use crate::model::JobView;

    thread_local! {
        /// The upload in flight, so Cancel can abort it.
        static CURRENT: std::cell::RefCell<Option<web_sys::XmlHttpRequest>> =
            const { std::cell::RefCell::new(None) };
        /// The file picked, until it is stored or the dialog closes: an encrypted one is
        /// sent after its key is typed, and again with another key after a refusal.
        static PICKED: std::cell::RefCell<Option<web_sys::File>> =
            const { std::cell::RefCell::new(None) };
    }

    /// Keeps `file` as the one to upload.
    pub fn pick(file: web_sys::File) {
        PICKED.with(|p| *p.borrow_mut() = Some(file));
    }

    /// Lets the picked file go.
    pub fn forget() {
        PICKED.with(|p| p.borrow_mut().take());
    }

    /// Aborts the upload in flight, if any (its handlers then do nothing).
    pub fn abort() {
        forget();
        if let Some(xhr) = CURRENT.with(|c| c.borrow_mut().take()) {
            xhr.set_onload(None);
            xhr.set_onerror(None);
            if let Ok(up) = xhr.upload() {
                up.set_onprogress(None);
            }
            let _ = xhr.abort();
        }
    }

    /// Uploads the picked file, with `identity` (the key for an encrypted archive) when given.
    pub fn start(identity: Option<String>, stage: RwSignal<Stage>, jobs: RwSignal<Vec<JobView>>) {
        let Some(file) = PICKED.with(|p| p.borrow().clone()) else {
            return;
        };
        let name = file.name();
        let total = file.size();
        stage.set(Stage::Uploading {
            name: name.clone(),
            done: 0.0,
            total,
        });
        let Ok(xhr) = web_sys::XmlHttpRequest::new() else {
            return;
        };
        let Ok(form) = web_sys::FormData::new() else {
            return;
        };
        if let Some(key) = &identity {
            let _ = form.append_with_str("identity", key);
        }
        let _ = form.append_with_blob_and_filename("file", &file, &name);
        let _ = xhr.open("POST", "/api/backups/upload/");
        let name_p = name.clone();
        let on_progress =
            Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |ev: web_sys::ProgressEvent| {
                let t = if ev.length_computable() {
                    ev.total()
                } else {
                    total
                };
                stage.set(Stage::Uploading {
                    name: name_p.clone(),
                    done: ev.loaded(),
                    total: t,
                });
            });
        if let Ok(up) = xhr.upload() {
            up.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        }
        on_progress.forget();
        let xhr2 = xhr.clone();
        let name_l = name.clone();
        let on_load = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            CURRENT.with(|c| c.borrow_mut().take());
            let status = xhr2.status().unwrap_or(0);
            let text = xhr2.response_text().ok().flatten().unwrap_or_default();
            if status == 201 {
                forget();
                match serde_json::from_str::<JobView>(&text) {
                    Ok(job) => {
                        jobs.update(|l| crate::components::job_table::upsert(l, job.clone()));
                        leptos::task::spawn_local(async move {
                            match crate::api::jobs::job_manifest(job.id).await {
                                Ok(m) => stage.set(Stage::Review {
                                    job: Box::new(job),
                                    manifest: Box::new(m),
                                }),
                                Err(e) => stage.set(Stage::failed(e.to_string())),
                            }
                        });
                    }
                    Err(_) => stage.set(Stage::failed(
                        "the server answered with something unexpected",
                    )),
                }
            } else {
                // A key refused (or none given), or an encrypted file refused: another key
                // may open it. (A key that is not one at all is a 400 naming the field.)
                let retry_key = (key_refused(&text)
                    || (status == 422 && super::is_age_name(&name_l)))
                .then(|| name_l.clone());
                stage.set(Stage::Failed {
                    message: crate::model::api_error_message(&text, status, "the upload"),
                    retry_key,
                });
            }
        });
        xhr.set_onload(Some(on_load.as_ref().unchecked_ref()));
        on_load.forget();
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            CURRENT.with(|c| c.borrow_mut().take());
            stage.set(Stage::failed("the connection broke during the upload"));
        });
        xhr.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        let _ = xhr.send_with_opt_form_data(Some(&form));
        CURRENT.with(|c| *c.borrow_mut() = Some(xhr));
    }

    /// Whether a refusal names the `identity` field: an encrypted archive sent with no key
    /// (whatever its file is called).
    fn key_refused(body: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .is_some_and(|v| v.pointer("/error/fields/identity").is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_a_key_goes_as_it_is_for_the_server_to_explain_and_a_blank_one_not_at_all() {
        assert_eq!(
            secret_key_in("  not a key \n").as_deref(),
            Some("not a key")
        );
        assert_eq!(secret_key_in(" \n"), None);
    }

    #[test]
    fn an_age_file_is_known_by_its_name() {
        assert!(is_age_name("backstop-2026.tar.gz.age"));
        assert!(is_age_name("COPY.TAR.GZ.AGE"));
        assert!(!is_age_name("backstop-2026.tar.gz"));
    }
}
