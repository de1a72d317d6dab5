//! A timestamp in the browser's local time. The server renders the UTC value; after
//! hydration the browser shows it in its own zone and locale ("Nov 25, 8:12 PM", the year
//! only when it is not this year), with the full date, seconds and zone in the tooltip.

use leptos::prelude::*;

/// `weekday` adds the day's name, for times in the future ("next run Thu, Nov 26, 3:00 AM").
#[component]
pub fn LocalTime(
    #[prop(into)] iso: Signal<Option<String>>,
    #[prop(optional)] weekday: bool,
) -> impl IntoView {
    // Effects run only in the browser, after hydration: until then (and on the server) the
    // text is the UTC rendering, so the hydrated DOM matches the server's HTML.
    let in_browser = RwSignal::new(false);
    Effect::new(move |_| in_browser.set(true));
    let text = move || {
        let iso = iso.get().unwrap_or_default();
        if in_browser.get() {
            local::short(&iso, weekday).unwrap_or_else(|| short_utc(&iso))
        } else {
            short_utc(&iso)
        }
    };
    let full = move || {
        let iso = iso.get().unwrap_or_default();
        if in_browser.get() {
            local::full(&iso)
        } else {
            None
        }
    };
    view! { <time datetime=move || iso.get() title=full>{text}</time> }
}

fn short_utc(iso: &str) -> String {
    if iso.is_empty() {
        return "—".into();
    }
    let s = iso.replace('T', " ");
    let s = s
        .split('.')
        .next()
        .unwrap_or(&s)
        .trim_end_matches('Z')
        .to_owned();
    format!("{s} UTC")
}

#[cfg(feature = "hydrate")]
mod local {
    use wasm_bindgen::JsValue;

    fn date(iso: &str) -> Option<js_sys::Date> {
        if iso.is_empty() {
            return None;
        }
        let d = js_sys::Date::new(&JsValue::from_str(iso));
        (!d.get_time().is_nan()).then_some(d)
    }

    fn options(pairs: &[(&str, &str)]) -> js_sys::Object {
        let o = js_sys::Object::new();
        for (k, v) in pairs {
            let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v));
        }
        o
    }

    /// "Nov 26, 3:00 AM" in the browser's locale; the year only when it differs.
    pub fn short(iso: &str, weekday: bool) -> Option<String> {
        let d = date(iso)?;
        let this_year = js_sys::Date::new_0().get_full_year() == d.get_full_year();
        let mut o = vec![
            ("month", "short"),
            ("day", "numeric"),
            ("hour", "numeric"),
            ("minute", "2-digit"),
        ];
        if !this_year {
            o.push(("year", "numeric"));
        }
        if weekday {
            o.push(("weekday", "short"));
        }
        Some(d.to_locale_string("default", &options(&o)).into())
    }

    pub fn full(iso: &str) -> Option<String> {
        let d = date(iso)?;
        Some(
            d.to_locale_string(
                "default",
                &options(&[("dateStyle", "full"), ("timeStyle", "long")]),
            )
            .into(),
        )
    }
}

#[cfg(not(feature = "hydrate"))]
mod local {
    pub fn short(_: &str, _: bool) -> Option<String> {
        None
    }
    pub fn full(_: &str) -> Option<String> {
        None
    }
}
