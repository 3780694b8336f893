//! The server's one error type: a status and a reason, rendered as the spec's JSON fault body.
//! Client mistakes are 4xx with a reason; only the engine's own failures are 5xx, and those are
//! logged here with their cause (the client sees a generic message).

use crate::api::fault::fault_body;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The 409 of a hashmap PUT carries the missing hashes instead of a fault.
    pub body_override: Option<String>,
    pub allow: Option<&'static str>,
    /// Seconds, for a 503 that a later try may cure.
    pub retry_after: Option<u32>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            body_override: None,
            allow: None,
            retry_after: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    /// A token the identity service does not know, answered by the object store or the
    /// registry (in the shape the original forwards the identity service's refusal).
    pub fn invalid_token() -> ApiError {
        ApiError {
            body_override: Some(crate::api::fault::forwarded_fault_body(401, "Invalid token")),
            ..Self::new(StatusCode::UNAUTHORIZED, "Invalid token")
        }
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    pub fn not_allowed(allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
    }
    pub fn range(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::RANGE_NOT_SATISFIABLE, m)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        use StoreError::*;
        match e {
            ContainerNotFound | ObjectNotFound | VersionNotFound => ApiError::not_found(e.to_string()),
            ContainerNotEmpty => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            Forbidden => ApiError::forbidden(e.to_string()),
            UserExists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            MissingBlocks(ref hashes) => {
                // (a hash serializes as its hex digits: no string per hash on the way)
                ApiError {
                    body_override: Some(serde_json::to_string(hashes).unwrap_or_default()),
                    ..ApiError::new(StatusCode::CONFLICT, e.to_string())
                }
            }
            QuotaExceeded => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            PreconditionFailed(m) => ApiError::new(StatusCode::PRECONDITION_FAILED, m),
            Invalid(m) => ApiError::bad_request(m),
            Unavailable(_) => {
                tracing::error!(error = %e, "storage backend unavailable");
                ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Storage temporarily unavailable")
                }
            }
            CorruptBlock(_) | LostBlock(_) | Io(_) | Db(_) | NoRow => {
                tracing::error!(error = %e, "storage engine failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal storage error")
            }
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        tracing::error!(error = %e, "storage task failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self
            .body_override
            .unwrap_or_else(|| fault_body(self.status.as_u16(), &self.message));
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        if let Some(a) = self.allow {
            r.headers_mut().insert("allow", HeaderValue::from_static(a));
        }
        if let Some(s) = self.retry_after {
            r.headers_mut().insert("retry-after", HeaderValue::from(s));
        }
        r
    }
}
