//! Server functions, grouped by resource. Each one authorizes itself: a server function is
//! a public endpoint, whatever page happens to call it.

pub mod auth;
pub mod data;
pub mod destinations;
pub mod encryption;
pub mod jobs;
pub mod settings;

#[cfg(feature = "ssr")]
pub mod ssr {
    //! Server-only helpers shared by the server functions (and by the REST sign-in).
    use engine::Engine;
    use engine::auth::{Account, Role, SESSION_ACCOUNT_KEY, SESSION_EPOCH_KEY};
    use leptos::prelude::*;

    /// Binds `session` to `account` and its sign-in epoch (so a password reset ends it),
    /// with a fresh id (no session fixation). The one way a session starts: the REST
    /// sign-in and the sign-in server function both call it.
    pub async fn start_session(
        engine: &Engine,
        session: &tower_sessions::Session,
        account: &Account,
    ) -> Result<(), engine::Error> {
        let epoch = engine::auth::session_epoch(engine.state(), account.id).await?;
        let failed = |e| engine::Error::internal("cannot start a session", e);
        session.cycle_id().await.map_err(failed)?;
        session
            .insert(SESSION_ACCOUNT_KEY, account.id)
            .await
            .map_err(failed)?;
        session
            .insert(SESSION_EPOCH_KEY, epoch)
            .await
            .map_err(failed)
    }

    pub fn engine() -> Result<Engine, crate::error::AppError> {
        use_context::<Engine>()
            .ok_or_else(|| crate::error::AppError::new("server is not initialised"))
    }

    /// The signed-in account, if any.
    pub async fn current_account() -> Result<Option<Account>, crate::error::AppError> {
        let engine = engine()?;
        let session: tower_sessions::Session = leptos_axum::extract()
            .await
            .map_err(|e| crate::error::AppError::new(format!("no session: {e}")))?;
        let id: Option<i64> = session.get(SESSION_ACCOUNT_KEY).await.ok().flatten();
        let epoch: Option<i64> = session.get(SESSION_EPOCH_KEY).await.ok().flatten();
        match id {
            None => Ok(None),
            Some(id) => engine::auth::session_account(engine.state(), id, epoch)
                .await
                .map_err(crate::error::AppError::from),
        }
    }

    /// The signed-in admin, or an error a person can read.
    pub async fn require_admin() -> Result<(Engine, Account), crate::error::AppError> {
        let engine = engine()?;
        match current_account().await? {
            None => Err(crate::error::AppError::new("sign in first")),
            Some(a) if a.role != Role::Admin => Err(crate::error::AppError::new(
                "only admins can manage backups",
            )),
            Some(a) => Ok((engine, a)),
        }
    }
}
