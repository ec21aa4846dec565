//! The server's error type and its one mapping to gRPC and HTTP status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything a request can fail with. Mapped to a wire status in exactly one place
/// ([`ServerError::code`]), each with a stable machine-readable code.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The request is malformed or a value is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The cluster is not in a state that allows this yet (e.g. no shards).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A node did not answer an instruction in time, or is not connected.
    #[error("{0}")]
    Unavailable(String),
    /// A concurrent change won; retry.
    #[error("{0}")]
    Aborted(String),
    /// A quota or a request rate limit is exhausted (nothing was changed).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] meridian_store::StoreError),
    /// A stored value could not be decoded.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
}

impl From<meridian_model::ModelError> for ServerError {
    fn from(e: meridian_model::ModelError) -> Self {
        ServerError::InvalidArgument(e.to_string())
    }
}

/// Result with [`ServerError`].
pub type Result<T> = std::result::Result<T, ServerError>;

impl ServerError {
    /// Stable code shared by gRPC and HTTP answers.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::InvalidArgument(_) => "invalid_argument",
            ServerError::NotFound(_) => "not_found",
            ServerError::AlreadyExists(_) => "already_exists",
            ServerError::FailedPrecondition(_) => "failed_precondition",
            ServerError::Unavailable(_) => "unavailable",
            ServerError::Aborted(_) => "aborted",
            ServerError::ResourceExhausted(_) => "resource_exhausted",
            ServerError::Store(_) => "internal",
            ServerError::Corrupt(_) => "internal",
        }
    }

    fn http_status(&self) -> StatusCode {
        match self {
            ServerError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::AlreadyExists(_) | ServerError::Aborted(_) => StatusCode::CONFLICT,
            ServerError::FailedPrecondition(_) => StatusCode::PRECONDITION_FAILED,
            ServerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            ServerError::Store(_) | ServerError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ServerError> for tonic::Status {
    fn from(e: ServerError) -> Self {
        let msg = e.to_string();
        match e {
            ServerError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            ServerError::NotFound(_) => tonic::Status::not_found(msg),
            ServerError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            ServerError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            ServerError::Unavailable(_) => tonic::Status::unavailable(msg),
            ServerError::Aborted(_) => tonic::Status::aborted(msg),
            ServerError::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            ServerError::Store(_) | ServerError::Corrupt(_) => tonic::Status::internal(msg),
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        crate::http::ErrorBody::response(self.http_status(), self.code(), self.to_string())
    }
}
