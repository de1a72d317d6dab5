//! The sign-in page. Works without JavaScript too (the form posts to the server function).

use leptos::prelude::*;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<crate::api::auth::Login>::new();
    let pending = login.pending();
    Effect::new(move |_| {
        if let Some(Ok(_)) = login.value().get() {
            // A full navigation, so every resource (who am I, jobs) starts fresh.
            #[cfg(feature = "hydrate")]
            let _ = window().location().set_href("/backups");
        }
    });
    let error = move || match login.value().get() {
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    };
    view! {
        <section class="card login">
            <h1>"Sign in to Backstop"</h1>
            <ActionForm action=login>
                <label for="username">"Username"</label>
                <input id="username" name="username" type="text" autocomplete="username" required autofocus/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                {move || error().map(|e| view! { <p class="error" role="alert" id="login-error">{e}</p> })}
                <button type="submit" class="btn btn-primary" disabled=pending>
                    {move || if pending.get() { "Signing in…" } else { "Sign in" }}
                </button>
            </ActionForm>
            <p class="hint">"The first admin's password is printed once when Backstop starts for the first time (or set with BACKSTOP_ADMIN_PASSWORD)."</p>
        </section>
    }
}
