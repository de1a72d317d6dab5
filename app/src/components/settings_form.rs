//! The settings card: archive path, include recordings, retention and schedule, with the
//! next run, field errors next to their fields and an unsaved-changes mark.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::components::local_time::LocalTime;
use crate::model::{SaveOutcome, SettingsView};

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

#[component]
pub fn SettingsForm(include_recordings_default: RwSignal<bool>) -> impl IntoView {
    let loaded = Resource::new(|| (), |_| crate::api::settings::get_settings());
    view! {
        <section class="card settings">
            <h2>"Settings"</h2>
            <Suspense fallback=|| view! { <p class="empty">"Loading settings…"</p> }>
                {move || Suspend::new(async move {
                    match loaded.await {
                        Ok(s) => {
                            include_recordings_default.set(s.include_recordings);
                            view! { <SettingsFields initial=s include_recordings_default=include_recordings_default/> }.into_any()
                        }
                        Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn SettingsFields(
    initial: SettingsView,
    include_recordings_default: RwSignal<bool>,
) -> impl IntoView {
    // The server renders the saved values as attributes (the page reads right before it
    // hydrates and without JavaScript); the `prop:` bindings keep the live values after that.
    let init = initial.clone();
    let init_freq = if init.schedule.enabled {
        init.schedule.frequency.as_str().to_owned()
    } else {
        "disabled".to_owned()
    };
    let saved = RwSignal::new(initial.clone());
    let path = RwSignal::new(initial.path.clone());
    let include = RwSignal::new(initial.include_recordings);
    let retention = RwSignal::new(initial.retention_count.to_string());
    let frequency = RwSignal::new(if initial.schedule.enabled {
        initial.schedule.frequency.as_str().to_owned()
    } else {
        "disabled".into()
    });
    let time = RwSignal::new(initial.schedule.time.clone());
    let day = RwSignal::new(initial.schedule.day_of_week.to_string());
    let tz = RwSignal::new(initial.schedule.timezone.clone());
    let errors = RwSignal::new(BTreeMap::<String, String>::new());
    let notice = RwSignal::new(None::<String>);

    let to_json = move || {
        let freq = frequency.get();
        let enabled = freq != "disabled";
        let retention_value: serde_json::Value = retention
            .get()
            .trim()
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::String(retention.get()));
        let day_value: serde_json::Value = day
            .get()
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::String(day.get()));
        serde_json::json!({
            "path": path.get(),
            "include_recordings": include.get(),
            "retention_count": retention_value,
            "schedule": {
                "enabled": enabled,
                "frequency": if enabled { freq } else { saved.get().schedule.frequency.as_str().to_owned() },
                "time": time.get(),
                "day_of_week": day_value,
                "timezone": tz.get(),
            }
        })
    };
    let dirty = Memo::new(move |_| {
        let s = saved.get();
        let freq = if s.schedule.enabled {
            s.schedule.frequency.as_str().to_owned()
        } else {
            "disabled".into()
        };
        path.get() != s.path
            || include.get() != s.include_recordings
            || retention.get() != s.retention_count.to_string()
            || frequency.get() != freq
            || time.get() != s.schedule.time
            || day.get() != s.schedule.day_of_week.to_string()
            || tz.get() != s.schedule.timezone
    });
    // Leaving or reloading the page with unsaved settings asks first (the browser's own
    // prompt). Navigation inside the app keeps the form's state only until the page changes.
    #[cfg(feature = "hydrate")]
    leave_guard::install(dirty);

    let save = Action::new(move |body: &String| {
        let body = body.clone();
        async move { crate::api::settings::save_settings(body).await }
    });
    Effect::new(move |_| match save.value().get() {
        Some(Ok(SaveOutcome::Saved(s))) => {
            errors.set(BTreeMap::new());
            notice.set(Some("Settings saved.".into()));
            include_recordings_default.set(s.include_recordings);
            path.set(s.path.clone());
            retention.set(s.retention_count.to_string());
            saved.set(s);
        }
        Some(Ok(SaveOutcome::Invalid(f))) => {
            notice.set(Some("Nothing was saved: fix the marked fields.".into()));
            errors.set(f);
        }
        Some(Err(e)) => notice.set(Some(e.to_string())),
        None => {}
    });

    let err = move |field: &'static str| move || errors.with(|e| e.get(field).cloned());
    let field_error = move |field: &'static str, id: &'static str| {
        view! { {move || err(field)().map(|m| view! { <span class="field-error" id=id role="alert">{m}</span> })} }
    };

    view! {
        <form class="settings-form" novalidate on:submit=move |ev| {
            ev.prevent_default();
            notice.set(None);
            save.dispatch(to_json().to_string());
        }>
            <div class="field">
                <label for="settings-path">"Backup folder"</label>
                <input id="settings-path" type="text" value=init.path.clone() prop:value=move || path.get()
                    on:input=move |ev| path.set(event_target_value(&ev))
                    aria-invalid=move || err("path")().is_some().to_string() aria-describedby="err-path"/>
                {field_error("path", "err-path")}
            </div>
            <div class="field">
                <label class="switch">
                    <input type="checkbox" id="settings-include-recordings" checked=init.include_recordings prop:checked=move || include.get()
                        on:change=move |ev| include.set(event_target_checked(&ev))/>
                    <span>"Include recordings"</span>
                </label>
                {field_error("include_recordings", "err-include")}
            </div>
            <div class="field">
                <label for="settings-retention">"Keep the newest"</label>
                <input id="settings-retention" type="number" min="0" inputmode="numeric" value=init.retention_count.to_string() prop:value=move || retention.get()
                    on:input=move |ev| retention.set(event_target_value(&ev))
                    aria-invalid=move || err("retention_count")().is_some().to_string() aria-describedby="err-retention"/>
                <span class="hint">"backups (0 keeps all; uploads are never pruned)"</span>
                {field_error("retention_count", "err-retention")}
            </div>
            <fieldset class="schedule">
                <legend>"Schedule"</legend>
                <div class="field">
                    <label for="settings-frequency">"Frequency"</label>
                    <select id="settings-frequency" prop:value=move || frequency.get()
                        on:change=move |ev| frequency.set(event_target_value(&ev))>
                        <option value="disabled" selected=init_freq == "disabled">"Disabled"</option>
                        <option value="hourly" selected=init_freq == "hourly">"Hourly"</option>
                        <option value="daily" selected=init_freq == "daily">"Daily"</option>
                        <option value="weekly" selected=init_freq == "weekly">"Weekly"</option>
                    </select>
                    {field_error("schedule.frequency", "err-frequency")}
                </div>
                <div class="field">
                    <label for="settings-time">{move || if frequency.get() == "hourly" { "Minute past the hour (HH:MM)" } else { "Time (HH:MM)" }}</label>
                    <input id="settings-time" type="text" placeholder="03:00" value=init.schedule.time.clone() prop:value=move || time.get()
                        on:input=move |ev| time.set(event_target_value(&ev))
                        aria-invalid=move || err("schedule.time")().is_some().to_string() aria-describedby="err-time"/>
                    {field_error("schedule.time", "err-time")}
                </div>
                <div class="field" class:hidden=move || frequency.get() != "weekly">
                    <label for="settings-day">"Day"</label>
                    <select id="settings-day" prop:value=move || day.get() on:change=move |ev| day.set(event_target_value(&ev))>
                        {WEEKDAYS.iter().enumerate().map(|(i, d)| view! { <option value=i.to_string() selected=i == usize::from(init.schedule.day_of_week)>{*d}</option> }).collect_view()}
                    </select>
                    {field_error("schedule.day_of_week", "err-day")}
                </div>
                <div class="field">
                    <label for="settings-timezone">"Time zone"</label>
                    <input id="settings-timezone" type="text" placeholder="Europe/London" value=init.schedule.timezone.clone() prop:value=move || tz.get()
                        on:input=move |ev| tz.set(event_target_value(&ev))
                        aria-invalid=move || err("schedule.timezone")().is_some().to_string() aria-describedby="err-timezone"/>
                    {field_error("schedule.timezone", "err-timezone")}
                </div>
                <p class="next-run" id="next-run" aria-live="polite">
                    {move || if dirty.get() {
                        // The form's own values in words; the server works out the next run on save.
                        let words = describe(&frequency.get(), &time.get(), &day.get(), &tz.get());
                        view! {
                            <span class="schedule-description">{words}</span>
                            <span class="hint">" (not saved yet; the next run is worked out when you save)"</span>
                        }.into_any()
                    } else {
                        let s = saved.get();
                        view! {
                            <span class="schedule-description">{s.schedule_description.clone()}</span>
                            {s.next_run_at.clone().map(|n| view! { "; next run " <LocalTime iso=Some(n) weekday=true/> })}
                            {(!s.schedule.enabled).then_some(": backups run only when started by hand.")}
                        }.into_any()
                    }}
                </p>
            </fieldset>
            {move || err("form")().map(|m| view! { <p class="error" role="alert">{m}</p> })}
            <div class="form-actions">
                <button type="submit" class="btn btn-primary" id="save-settings" disabled=move || save.pending().get()>"Save settings"</button>
                <span class="unsaved" aria-live="polite">{move || dirty.get().then_some("Unsaved changes")}</span>
                <span class="notice" role="status">{move || notice.get()}</span>
            </div>
        </form>
    }
}

/// The schedule in plain words, as the server says it ("Daily at 03:00 Europe/London"),
/// for values not saved yet. Invalid values are shown as typed; saving reports them.
fn describe(frequency: &str, time: &str, day: &str, tz: &str) -> String {
    match frequency {
        "hourly" => match time.split_once(':') {
            Some((_, mm)) if !mm.is_empty() => format!("Hourly at :{mm}"),
            _ => format!("Hourly at {time}"),
        },
        "daily" => format!("Daily at {time} {tz}"),
        "weekly" => {
            let d = day
                .parse::<usize>()
                .ok()
                .and_then(|i| WEEKDAYS.get(i))
                .copied()
                .unwrap_or("an unknown day");
            format!("Weekly on {d} at {time} {tz}")
        }
        _ => "Disabled".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn unsaved_schedule_reads_like_the_servers_words() {
        assert_eq!(
            describe("daily", "03:00", "0", "Europe/London"),
            "Daily at 03:00 Europe/London"
        );
        assert_eq!(
            describe("weekly", "03:00", "4", "UTC"),
            "Weekly on Thursday at 03:00 UTC"
        );
        assert_eq!(describe("hourly", "00:15", "0", "UTC"), "Hourly at :15");
        assert_eq!(describe("disabled", "03:00", "0", "UTC"), "Disabled");
    }
}

#[cfg(feature = "hydrate")]
mod leave_guard {
    use leptos::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    /// A `beforeunload` listener that asks while `dirty`; removed with the form.
    pub fn install(dirty: Memo<bool>) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let handler = Closure::<dyn FnMut(web_sys::BeforeUnloadEvent)>::new(
            move |ev: web_sys::BeforeUnloadEvent| {
                if dirty.try_get_untracked().unwrap_or(false) {
                    ev.prevent_default();
                    ev.set_return_value("You have unsaved settings.");
                }
            },
        );
        let f: js_sys::Function = handler.as_ref().unchecked_ref::<js_sys::Function>().clone();
        let _ = window.add_event_listener_with_callback("beforeunload", &f);
        handler.forget();
        let f = send_wrapper::SendWrapper::new(f);
        on_cleanup(move || {
            if let Some(w) = web_sys::window() {
                let _ = w.remove_event_listener_with_callback("beforeunload", &f);
            }
        });
    }
}
