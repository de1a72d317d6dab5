//! The JSON error body of DESIGN section 6: `{"error":{"code","message","fields"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::{Error, ErrorKind};

/// An engine error on its way to an HTTP client.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Denied => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Canceled => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status_of(e.kind());
        if status.is_server_error() {
            tracing::error!(error = %e.detailed(), "request failed");
        } else {
            tracing::debug!(error = %e.detailed(), "request refused");
        }
        let body = serde_json::json!({
            "error": {
                "code": e.kind().code(),
                "message": e.message(),
                "fields": e.field_errors(),
            }
        });
        (status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// `Json<T>` whose rejections (malformed JSON, wrong content type, wrong fields) answer with
/// the JSON error body and 400, instead of axum's plain-text responses.
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                // A body over the route's limit sent without a Content-Length is only found
                // while it is read: that is 413 too, not "invalid".
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(ApiError(Error::new(
                        engine::ErrorKind::TooLarge,
                        "the request body is too large for this route",
                    )));
                }
                let msg = match &rejection {
                    axum::extract::rejection::JsonRejection::MissingJsonContentType(_) => {
                        "send the body as JSON with Content-Type: application/json".to_owned()
                    }
                    axum::extract::rejection::JsonRejection::JsonSyntaxError(_) => {
                        "the request body is not valid JSON".to_owned()
                    }
                    axum::extract::rejection::JsonRejection::JsonDataError(e) => {
                        format!("the request body has the wrong shape: {}", e.body_text())
                    }
                    other => other.body_text(),
                };
                Err(ApiError(Error::invalid(msg)))
            }
        }
    }
}
