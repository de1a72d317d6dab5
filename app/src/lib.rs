#![recursion_limit = "256"]
//! Backstop's web UI: a Leptos app rendered on the server and hydrated in the browser.
//!
//! - [`model`]: wire types shared by browser and server.
//! - [`error`]: the error every server function returns (kind, message, fields).
//! - [`api`]: server functions (the page's actions), grouped by resource.
//! - [`pages`]: one file per route.
//! - [`components`]: the pieces pages are made of.

pub mod api;
pub mod components;
pub mod error;
pub mod model;
pub mod pages;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::model::MeView;

/// The HTML document around the app (server side).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.ico" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Who is signed in, shared by every page.
pub type MeResource = Resource<Result<Option<MeView>, crate::error::AppError>>;

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let me: MeResource = Resource::new(|| (), |_| api::auth::current_user());
    provide_context(me);

    // A marker the browser tests wait for: set only once the page is interactive.
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/backstop.css"/>
        <Title text="Backstop"/>
        <Router>
            <a class="skip-link" href="#main">"Skip to content"</a>
            <header class="topbar">
                <A href="/" attr:class="brand">
                    <span class="brand-mark" aria-hidden="true"></span>
                    "Backstop"
                </A>
                <nav aria-label="Main">
                    <A href="/backups">"Backups"</A>
                    <A href="/plugins">"Plugins"</A>
                    <A href="/data">"Data"</A>
                </nav>
                <components::user_menu::UserMenu/>
            </header>
            <main id="main">
                <Routes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                    <Route path=path!("/") view=pages::backups::BackupsPage/>
                    <Route path=path!("/backups") view=pages::backups::BackupsPage/>
                    <Route path=path!("/plugins") view=pages::plugins::PluginsPage/>
                    <Route path=path!("/data") view=pages::data::DataPage/>
                    <Route path=path!("/login") view=pages::login::LoginPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// Entry point of the browser bundle.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
