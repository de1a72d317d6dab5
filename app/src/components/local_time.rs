//! A timestamp in the browser's local time. The server renders the UTC value; the browser
//! replaces it with its local rendering after hydration.

use leptos::prelude::*;

#[component]
pub fn LocalTime(#[prop(into)] iso: Option<String>) -> impl IntoView {
    let iso = iso.unwrap_or_default();
    let (text, set_text) = signal(short_utc(&iso));
    let iso_for_effect = iso.clone();
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            if !iso_for_effect.is_empty() {
                let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(&iso_for_effect));
                if !d.get_time().is_nan() {
                    let s: String = d.to_locale_string("default", &js_sys::Object::new()).into();
                    set_text.set(s);
                }
            }
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = (&iso_for_effect, set_text);
        }
    });
    view! { <time datetime=iso.clone()>{text}</time> }
}

fn short_utc(iso: &str) -> String {
    if iso.is_empty() {
        return "—".into();
    }
    let s = iso.replace('T', " ");
    let s = s.split('.').next().unwrap_or(&s).trim_end_matches('Z').to_owned();
    format!("{s} UTC")
}
