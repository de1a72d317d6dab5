//! A modal dialog frame that behaves for the keyboard: focus moves into it when it opens
//! (to the element marked `data-autofocus`, else the first focusable one, else the dialog),
//! Tab and Shift+Tab cycle inside it, Escape and a click on the backdrop close it, and
//! focus goes back to where it was (or to `return_to`) when it closes.

use leptos::prelude::*;

#[component]
pub fn Modal(
    /// Id of the dialog's heading.
    #[prop(into)]
    labelledby: String,
    /// Closes the dialog (the owner clears its state).
    on_close: Callback<()>,
    /// An `alertdialog` (for errors) instead of a `dialog`.
    #[prop(optional)]
    alert: bool,
    /// A selector to focus on close, for dialogs opened by a flow rather than a click
    /// (the upload dialog's stages follow each other); by default the element that had
    /// focus when the dialog opened.
    #[prop(optional)]
    return_to: Option<&'static str>,
    #[prop(optional, into)] id: Option<String>,
    children: Children,
) -> impl IntoView {
    let node = NodeRef::<leptos::html::Div>::new();
    #[cfg(feature = "hydrate")]
    {
        let opener = send_wrapper::SendWrapper::new(focus::opener(return_to));
        Effect::new(move |_| {
            if let Some(el) = node.get() {
                focus::initial(&el);
            }
        });
        on_cleanup(move || focus::restore(opener.take(), return_to));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = return_to;
    view! {
        <div class="modal-backdrop" on:click=move |_| on_close.run(())></div>
        <div class="modal" role=if alert { "alertdialog" } else { "dialog" } aria-modal="true"
             aria-labelledby=labelledby id=id tabindex="-1" node_ref=node
             on:keydown=move |ev| {
                 if ev.key() == "Escape" {
                     ev.prevent_default();
                     on_close.run(());
                 } else if ev.key() == "Tab" {
                     #[cfg(feature = "hydrate")]
                     if let Some(el) = node.get_untracked() {
                         focus::trap(&ev, &el);
                     }
                 }
             }>
            {children()}
        </div>
    }
}

/// When nothing has focus any more (the focused element went away with its row), puts it
/// on `selector`, else on the History heading.
pub fn focus_fallback(selector: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let doc = document();
        let lost = doc.active_element().is_none_or(|a| {
            doc.body()
                .is_some_and(|b| &a == b.unchecked_ref::<web_sys::Element>())
        });
        if lost {
            focus::fallback(selector);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = selector;
}

#[cfg(feature = "hydrate")]
mod focus {
    use leptos::prelude::*;
    use wasm_bindgen::{JsCast, JsValue};

    const FOCUSABLE: &str = "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";

    pub fn opener(return_to: Option<&'static str>) -> Option<web_sys::HtmlElement> {
        if return_to.is_some() {
            return None;
        }
        document()
            .active_element()
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    }

    fn focusables(root: &web_sys::Element) -> Vec<web_sys::HtmlElement> {
        // querySelectorAll through JS: the NodeList binding is not among web-sys's enabled features.
        let Ok(f) = js_sys::Reflect::get(root, &JsValue::from_str("querySelectorAll")) else {
            return vec![];
        };
        let Ok(f) = f.dyn_into::<js_sys::Function>() else {
            return vec![];
        };
        let Ok(list) = f.call1(root, &JsValue::from_str(FOCUSABLE)) else {
            return vec![];
        };
        js_sys::Array::from(&list)
            .iter()
            .filter_map(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
            .collect()
    }

    pub fn initial(dialog: &web_sys::HtmlDivElement) {
        let target = dialog
            .query_selector("[data-autofocus]")
            .ok()
            .flatten()
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
            .or_else(|| focusables(dialog).into_iter().next());
        match target {
            Some(t) => {
                let _ = t.focus();
            }
            None => {
                let _ = dialog.focus();
            }
        }
    }

    pub fn trap(ev: &web_sys::KeyboardEvent, dialog: &web_sys::HtmlDivElement) {
        let items = focusables(dialog);
        let (Some(first), Some(last)) = (items.first(), items.last()) else {
            ev.prevent_default();
            return;
        };
        let active = document().active_element();
        let at = |e: &web_sys::HtmlElement| {
            active
                .as_ref()
                .is_some_and(|a| a == e.unchecked_ref::<web_sys::Element>())
        };
        let outside = active.as_ref().is_none_or(|a| !dialog.contains(Some(a)));
        if ev.shift_key() && (at(first) || outside) {
            ev.prevent_default();
            let _ = last.focus();
        } else if !ev.shift_key() && (at(last) || outside) {
            ev.prevent_default();
            let _ = first.focus();
        }
    }

    pub fn restore(opener: Option<web_sys::HtmlElement>, return_to: Option<&'static str>) {
        match (opener, return_to) {
            (Some(o), _) if o.is_connected() => {
                let _ = o.focus();
            }
            (_, Some(sel)) => fallback(sel),
            _ => fallback("#history-title"),
        }
    }

    pub fn fallback(selector: &str) {
        let doc = document();
        let target = doc
            .query_selector(selector)
            .ok()
            .flatten()
            .or_else(|| doc.query_selector("#history-title").ok().flatten())
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
        if let Some(t) = target {
            let _ = t.focus();
        }
    }
}
