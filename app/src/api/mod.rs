//! Server functions, grouped by resource. Each one authorizes itself: a server function is
//! a public endpoint, whatever page happens to call it.

pub mod auth;
pub mod data;
pub mod jobs;
pub mod settings;

#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    //! Server-only helpers shared by the server functions.
    use engine::Engine;
    use engine::auth::{Account, Role, SESSION_ACCOUNT_KEY};
    use leptos::prelude::*;

    pub fn engine() -> Result<Engine, ServerFnError> {
        use_context::<Engine>().ok_or_else(|| ServerFnError::new("server is not initialised"))
    }

    /// The signed-in account, if any.
    pub async fn current_account() -> Result<Option<Account>, ServerFnError> {
        let engine = engine()?;
        let session: tower_sessions::Session = leptos_axum::extract()
            .await
            .map_err(|e| ServerFnError::new(format!("no session: {e}")))?;
        let id: Option<i64> = session.get(SESSION_ACCOUNT_KEY).await.ok().flatten();
        match id {
            None => Ok(None),
            Some(id) => engine::auth::account(engine.state(), id)
                .await
                .map_err(to_sfe),
        }
    }

    /// The signed-in admin, or an error a person can read.
    pub async fn require_admin() -> Result<(Engine, Account), ServerFnError> {
        let engine = engine()?;
        match current_account().await? {
            None => Err(ServerFnError::new("sign in first")),
            Some(a) if a.role != Role::Admin => {
                Err(ServerFnError::new("only admins can manage backups"))
            }
            Some(a) => Ok((engine, a)),
        }
    }

    /// Engine errors become their user-facing message (details stay in the log).
    pub fn to_sfe(e: engine::Error) -> ServerFnError {
        if e.kind() == engine::ErrorKind::Internal {
            tracing_log(&e);
        }
        ServerFnError::new(e.message().to_owned())
    }

    fn tracing_log(e: &engine::Error) {
        leptos::logging::error!("server function failed: {}", e.detailed());
    }

    /// Converts between the engine's serde types and the wire types (same JSON shape).
    pub fn convert<A: serde::Serialize, B: serde::de::DeserializeOwned>(
        a: &A,
    ) -> Result<B, ServerFnError> {
        serde_json::to_value(a)
            .and_then(serde_json::from_value)
            .map_err(|e| ServerFnError::new(format!("internal conversion error: {e}")))
    }
}
