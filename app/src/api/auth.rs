//! Sign in, sign out, who am I.

use leptos::prelude::*;

use crate::model::MeView;

/// The signed-in account, or `None`.
#[server]
pub async fn current_user() -> Result<Option<MeView>, crate::error::AppError> {
    let account = super::ssr::current_account().await?;
    Ok(account)
}

/// Signs in (rate limited per client and username), rotating the session id.
#[server]
pub async fn login(username: String, password: String) -> Result<MeView, crate::error::AppError> {
    use axum::extract::ConnectInfo;
    let engine = super::ssr::engine()?;
    let ConnectInfo(addr): ConnectInfo<std::net::SocketAddr> = leptos_axum::extract()
        .await
        .map_err(|e| crate::error::AppError::new(format!("no client address: {e}")))?;
    let account = engine
        .login(&addr.ip().to_string(), &username, &password)
        .await
        .map_err(crate::error::AppError::from)?;
    let session: tower_sessions::Session = leptos_axum::extract()
        .await
        .map_err(|e| crate::error::AppError::new(format!("no session: {e}")))?;
    super::ssr::start_session(&engine, &session, &account).await?;
    Ok(account)
}

/// Signs out.
#[server]
pub async fn logout() -> Result<(), crate::error::AppError> {
    let session: tower_sessions::Session = leptos_axum::extract()
        .await
        .map_err(|e| crate::error::AppError::new(format!("no session: {e}")))?;
    session
        .flush()
        .await
        .map_err(|_| crate::error::AppError::new("cannot end the session"))?;
    Ok(())
}
