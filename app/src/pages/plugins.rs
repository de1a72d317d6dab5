//! The Plugins page: installed plugins, their state, and the admin's controls: enable or
//! disable, grant each requested folder, grant the veto, edit the settings. It works on the
//! wire types of the REST API ([`crate::model::PluginView`], [`crate::model::PluginUpdate`]).

use leptos::prelude::*;

use crate::components::auth_gate::AuthGate;
use crate::model::{GrantsUpdate, PluginLimits, PluginList, PluginUpdate, PluginView};

/// Every installed plugin, as `GET /api/backups/plugins/` lists it.
#[server]
pub async fn list_plugins() -> Result<PluginList, crate::error::AppError> {
    let (engine, _) = crate::api::ssr::require_admin().await?;
    Ok(engine.plugins_view().await?)
}

/// Applies a change through the same engine call as `PUT /api/backups/plugins/{id}/`;
/// returns the plugin as it is now.
#[server]
pub async fn update_plugin(
    id: String,
    change: PluginUpdate,
) -> Result<PluginView, crate::error::AppError> {
    let (engine, _) = crate::api::ssr::require_admin().await?;
    Ok(engine.update_plugin(&id, &change).await?)
}

#[component]
pub fn PluginsPage() -> impl IntoView {
    view! {
        <h1>"Plugins"</h1>
        <p class="lead">"WebAssembly plugins add content to backups and hook into each step. They see only the folders you grant them."</p>
        <AuthGate admin_only=true>
            <PluginList/>
        </AuthGate>
    }
}

#[component]
fn PluginList() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let plugins = Resource::new(move || reload.get(), |_| list_plugins());
    view! {
        <InstallForm reload=reload/>
        <Suspense fallback=|| view! { <p class="empty">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match plugins.await {
                    Ok(PluginList { plugins }) if plugins.is_empty() => {
                        view! { <p class="empty">"No plugins are installed. Install one above, or put a plugin folder (plugin.toml + plugin.wasm) in the data dir's plugins/ folder and restart."</p> }.into_any()
                    }
                    Ok(PluginList { plugins }) => view! {
                        <div class="plugin-list">
                            {plugins.into_iter().map(|p| view! { <PluginCard plugin=p/> }).collect_view()}
                        </div>
                    }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn PluginCard(plugin: PluginView) -> impl IntoView {
    let id = plugin.id.clone();
    let state = RwSignal::new(plugin.state.clone());
    let enabled = RwSignal::new(plugin.enabled);
    let requests_veto = plugin.requests_veto;
    let veto = RwSignal::new(plugin.grants.veto);
    let mounts: Vec<(String, String, RwSignal<String>)> = plugin
        .requested_mounts
        .iter()
        .map(|m| {
            let granted = plugin
                .grants
                .mounts
                .get(&m.name)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                m.name.clone(),
                m.description.clone(),
                RwSignal::new(granted),
            )
        })
        .collect();
    let settings = setting_fields(&plugin);
    // Limits the admin grants (empty: the plugin's own, capped by the server); the other
    // granted limits are sent back unchanged.
    let granted_limits = plugin.grants.limits;
    let limit_fields: Vec<LimitField> = [
        ("timeout_ms", "Time limit per call (ms)"),
        ("memory_mb", "Memory limit (MiB)"),
    ]
    .into_iter()
    .map(|(key, label)| LimitField {
        key,
        label,
        effective: limit_value(&plugin.limits, key)
            .map(|v| v.to_string())
            .unwrap_or_default(),
        text: RwSignal::new(
            limit_value(&granted_limits, key)
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ),
        error: RwSignal::new(None),
    })
    .collect();
    let limits_for_save = limit_fields.clone();
    let last_error = RwSignal::new(plugin.last_error.clone());
    let message = RwSignal::new(None::<(bool, String)>);
    let mounts_for_save = mounts.clone();
    let settings_for_save = settings.clone();
    let id_for_save = id.clone();
    let save = Action::new(move |_: &()| {
        let granted = mounts_for_save
            .iter()
            .filter_map(|(name, _, value)| {
                let v = value.get_untracked();
                let v = v.trim();
                (!v.is_empty()).then(|| (name.clone(), std::path::PathBuf::from(v)))
            })
            .collect();
        let settings = collect_settings(&settings_for_save);
        let limits = collect_limits(&limits_for_save, granted_limits);
        let id = id_for_save.clone();
        async move {
            let change = PluginUpdate {
                enabled: Some(enabled.get_untracked()),
                grants: Some(GrantsUpdate {
                    mounts: Some(granted),
                    veto: requests_veto.then(|| veto.get_untracked()),
                    limits: Some(limits?),
                }),
                settings: Some(settings?),
            };
            update_plugin(id, change).await.map_err(|e| e.to_string())
        }
    });
    Effect::new(move |_| match save.value().get() {
        Some(Ok(view)) => {
            state.set(view.state.clone());
            last_error.set(view.last_error.clone());
            message.set(Some((true, "Saved.".into())));
        }
        Some(Err(e)) => message.set(Some((false, e))),
        None => {}
    });
    let field_id = |what: &str| format!("plugin-{id}-{what}");
    view! {
        <section class="card plugin" data-plugin=id.clone()>
            <div class="plugin-head">
                <h2>{plugin.name.clone()}" "<span class="version">{plugin.version.clone()}</span></h2>
                <span class=move || format!("badge badge-{}", if state.get() == "enabled" { "succeeded" } else if state.get() == "broken" { "failed" } else { "pending" })>
                    {move || state.get()}
                </span>
            </div>
            <p class="hint">{format!("id {} · exports {} · on failure: {}", id, plugin.exports.join(", "), plugin.failure_policy)}</p>
            {move || last_error.get().map(|e| view! { <p class="error">"Last error: "{e}</p> })}
            <form class="plugin-form" novalidate on:submit=move |ev| { ev.prevent_default(); message.set(None); save.dispatch(()); }>
                <label class="switch">
                    <input type="checkbox" id=field_id("enabled") prop:checked=move || enabled.get()
                        on:change=move |ev| enabled.set(event_target_checked(&ev))/>
                    <span>"Enabled"</span>
                </label>
                {mounts.into_iter().map(|(name, description, value)| {
                    let fid = field_id(&format!("mount-{name}"));
                    view! {
                        <div class="field">
                            <label for=fid.clone()>{format!("Folder for mount \u{201c}{name}\u{201d}")}</label>
                            <input id=fid type="text" placeholder="/absolute/path" prop:value=move || value.get()
                                on:input=move |ev| value.set(event_target_value(&ev))/>
                            <span class="hint">{description}</span>
                        </div>
                    }
                }).collect_view()}
                {requests_veto.then(|| view! {
                    <label class="switch">
                        <input type="checkbox" id=field_id("veto") prop:checked=move || veto.get()
                            on:change=move |ev| veto.set(event_target_checked(&ev))/>
                        <span>"May stop a job (veto)"</span>
                    </label>
                })}
                {settings.into_iter().map(|f| setting_input(&id, f)).collect_view()}
                <div class="limits">
                    {limit_fields.into_iter().map(|f| limit_input(&id, f)).collect_view()}
                </div>
                <div class="form-actions">
                    <button type="submit" class="btn btn-primary" disabled=move || save.pending().get()>"Save"</button>
                    <span role="status">{move || message.get().map(|(ok, m)| view! { <span class=if ok { "ok" } else { "error" }>{m}</span> })}</span>
                </div>
            </form>
        </section>
    }
}

/// The limit the form edits under `key`.
fn limit_slot<'a>(limits: &'a mut PluginLimits, key: &str) -> Option<&'a mut Option<u64>> {
    match key {
        "timeout_ms" => Some(&mut limits.timeout_ms),
        "memory_mb" => Some(&mut limits.memory_mb),
        _ => None,
    }
}

fn limit_value(limits: &PluginLimits, key: &str) -> Option<u64> {
    let mut copy = *limits;
    limit_slot(&mut copy, key).and_then(|v| *v)
}

/// One setting of a plugin's `settings_schema`, as the form edits it.
#[derive(Clone)]
struct SettingField {
    name: String,
    /// `string`, `integer`, `boolean` or `json`.
    kind: String,
    description: String,
    text: RwSignal<String>,
    checked: RwSignal<bool>,
    error: RwSignal<Option<String>>,
}

/// The form fields for a plugin's settings: one per schema entry, holding the current value
/// (or the default).
fn setting_fields(plugin: &PluginView) -> Vec<SettingField> {
    plugin
        .settings_schema
        .iter()
        .map(|(name, spec)| {
            let value = plugin
                .settings
                .get(name)
                .cloned()
                .or_else(|| spec.default.clone())
                .unwrap_or(serde_json::Value::Null);
            let text_value = match (&value, spec.kind.as_str()) {
                (serde_json::Value::Null, _) => String::new(),
                (serde_json::Value::String(s), "string") => s.clone(),
                (v, "json") => serde_json::to_string_pretty(v).unwrap_or_default(),
                (v, _) => v.to_string(),
            };
            SettingField {
                name: name.clone(),
                description: spec.description.clone(),
                checked: RwSignal::new(value.as_bool().unwrap_or(false)),
                text: RwSignal::new(text_value),
                error: RwSignal::new(None),
                kind: spec.kind.clone(),
            }
        })
        .collect()
}

/// The settings object to send, or the reason it cannot be sent (each bad field also shows
/// its own message next to it).
fn collect_settings(
    fields: &[SettingField],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut out = serde_json::Map::new();
    let mut bad = Vec::new();
    for f in fields {
        let raw = f.text.get_untracked();
        let value = match f.kind.as_str() {
            "boolean" => Ok(serde_json::Value::Bool(f.checked.get_untracked())),
            "integer" => raw
                .trim()
                .parse::<i64>()
                .map(serde_json::Value::from)
                .map_err(|_| "must be a whole number".to_owned()),
            "json" => serde_json::from_str(&raw).map_err(|e| format!("is not valid JSON: {e}")),
            _ => Ok(serde_json::Value::String(raw)),
        };
        match value {
            Ok(v) => {
                f.error.set(None);
                out.insert(f.name.clone(), v);
            }
            Err(e) => {
                f.error.set(Some(e));
                bad.push(f.name.clone());
            }
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(format!("fix the settings marked above: {}", bad.join(", ")))
    }
}

/// The input for one setting, with its description and its error.
fn setting_input(plugin_id: &str, f: SettingField) -> impl IntoView + use<> {
    let fid = format!("plugin-{plugin_id}-setting-{}", f.name);
    let err_id = format!("{fid}-error");
    let SettingField {
        name,
        kind,
        description,
        text,
        checked,
        error,
    } = f;
    let invalid = move || error.get().is_some().to_string();
    let input = match kind.as_str() {
        "boolean" => view! {
            <label class="switch">
                <input type="checkbox" id=fid.clone() prop:checked=move || checked.get()
                    on:change=move |ev| checked.set(event_target_checked(&ev))/>
                <span>{name.clone()}</span>
            </label>
        }
        .into_any(),
        "json" => view! {
            <label for=fid.clone()>{format!("{name} (JSON)")}</label>
            <textarea id=fid.clone() rows="4" spellcheck="false" aria-invalid=invalid
                aria-describedby=err_id.clone()
                prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
        }
        .into_any(),
        other => {
            let input_type = if other == "integer" { "number" } else { "text" };
            view! {
                <label for=fid.clone()>{name.clone()}</label>
                <input id=fid.clone() type=input_type step="1" aria-invalid=invalid
                    aria-describedby=err_id.clone()
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))/>
            }
            .into_any()
        }
    };
    view! {
        <div class="field">
            {input}
            <span class="hint">{description}</span>
            <span class="field-error" id=err_id role="alert">{move || error.get()}</span>
        </div>
    }
}

/// A limit the admin may grant, as the form edits it.
#[derive(Clone)]
struct LimitField {
    key: &'static str,
    label: &'static str,
    /// What calls run under now (shown when nothing is granted).
    effective: String,
    text: RwSignal<String>,
    error: RwSignal<Option<String>>,
}

/// The limits to grant: `base` (the current grant) with each field set, or removed when
/// empty.
fn collect_limits(fields: &[LimitField], mut base: PluginLimits) -> Result<PluginLimits, String> {
    let mut bad = Vec::new();
    for f in fields {
        let raw = f.text.get_untracked();
        let raw = raw.trim();
        let Some(slot) = limit_slot(&mut base, f.key) else {
            continue;
        };
        if raw.is_empty() {
            *slot = None;
            f.error.set(None);
            continue;
        }
        match raw.parse::<u64>() {
            Ok(n) if n > 0 => {
                *slot = Some(n);
                f.error.set(None);
            }
            _ => {
                f.error.set(Some(
                    "a whole number above 0, or empty for the default".into(),
                ));
                bad.push(f.label);
            }
        }
    }
    if bad.is_empty() {
        Ok(base)
    } else {
        Err(format!("fix the limits marked above: {}", bad.join(", ")))
    }
}

fn limit_input(plugin_id: &str, f: LimitField) -> impl IntoView + use<> {
    let fid = format!("plugin-{plugin_id}-limit-{}", f.key);
    let err_id = format!("{fid}-error");
    let LimitField {
        label,
        effective,
        text,
        error,
        ..
    } = f;
    view! {
        <div class="field">
            <label for=fid.clone()>{label}</label>
            <input id=fid type="number" min="1" step="1" placeholder=format!("now {effective}")
                aria-invalid=move || error.get().is_some().to_string() aria-describedby=err_id.clone()
                prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))/>
            <span class="field-error" id=err_id role="alert">{move || error.get()}</span>
        </div>
    }
}

/// Install a plugin by upload: its `plugin.toml` and `plugin.wasm`, checked by the server
/// before anything is written; it arrives disabled.
#[component]
fn InstallForm(reload: RwSignal<u32>) -> impl IntoView {
    let manifest = NodeRef::<leptos::html::Input>::new();
    let component = NodeRef::<leptos::html::Input>::new();
    let message = RwSignal::new(None::<(bool, String)>);
    let busy = RwSignal::new(false);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        message.set(None);
        #[cfg(feature = "hydrate")]
        {
            let file = |r: NodeRef<leptos::html::Input>| {
                r.get().and_then(|el| el.files()).and_then(|f| f.get(0))
            };
            let (Some(m), Some(c)) = (file(manifest), file(component)) else {
                message.set(Some((
                    false,
                    "choose both files: plugin.toml and plugin.wasm".into(),
                )));
                return;
            };
            busy.set(true);
            install::send(m, c, move |result| {
                busy.set(false);
                match result {
                    Ok(name) => {
                        message.set(Some((true, format!("Installed {name}; enable it below."))));
                        if let Some(el) = manifest.get() {
                            el.set_value("");
                        }
                        if let Some(el) = component.get() {
                            el.set_value("");
                        }
                        reload.update(|r| *r += 1);
                    }
                    Err(e) => message.set(Some((false, e))),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (manifest, component, busy, reload);
    };
    view! {
        <section class="card install-plugin">
            <h2>"Install a plugin"</h2>
            <form class="plugin-form" novalidate on:submit=on_submit>
                <div class="limits">
                    <div class="field">
                        <label for="install-manifest">"plugin.toml"</label>
                        <input id="install-manifest" type="file" accept=".toml" node_ref=manifest/>
                    </div>
                    <div class="field">
                        <label for="install-component">"plugin.wasm"</label>
                        <input id="install-component" type="file" accept=".wasm,application/wasm" node_ref=component/>
                    </div>
                </div>
                <p class="hint">"The server checks both before writing anything. A new plugin starts disabled; a new version that asks for more waits for your approval."</p>
                <div class="form-actions">
                    <button type="submit" id="install-plugin" class="btn" disabled=move || busy.get()>"Install"</button>
                    <span role="status" id="install-status">{move || message.get().map(|(ok, m)| view! { <span class=if ok { "ok" } else { "error" }>{m}</span> })}</span>
                </div>
            </form>
        </section>
    }
}

#[cfg(feature = "hydrate")]
mod install {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    /// POSTs the two files as multipart (`manifest`, `component`); calls `done` with the
    /// plugin's name or the server's reason.
    pub fn send(
        manifest: web_sys::File,
        component: web_sys::File,
        done: impl Fn(Result<String, String>) + 'static,
    ) {
        let (Ok(xhr), Ok(form)) = (web_sys::XmlHttpRequest::new(), web_sys::FormData::new()) else {
            return done(Err("this browser cannot upload files".into()));
        };
        let _ = form.append_with_blob_and_filename("manifest", &manifest, &manifest.name());
        let _ = form.append_with_blob_and_filename("component", &component, &component.name());
        let _ = xhr.open("POST", "/api/backups/plugins/");
        let done = std::rc::Rc::new(done);
        let xhr2 = xhr.clone();
        let on_load = Closure::<dyn FnMut(web_sys::Event)>::new({
            let done = done.clone();
            move |_| {
                let status = xhr2.status().unwrap_or(0);
                let text = xhr2.response_text().ok().flatten().unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if status == 201 {
                    let name = v
                        .get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or("the plugin");
                    done(Ok(name.to_owned()));
                } else {
                    done(Err(crate::model::api_error_message(
                        &text,
                        status,
                        "the install",
                    )));
                }
            }
        });
        xhr.set_onload(Some(on_load.as_ref().unchecked_ref()));
        on_load.forget();
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            done(Err("the connection broke during the upload".into()))
        });
        xhr.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        let _ = xhr.send_with_opt_form_data(Some(&form));
    }
}
