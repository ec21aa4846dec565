//! The client's error type.

/// What a client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// An address could not be parsed.
    #[error("invalid address {0}")]
    InvalidAddress(String),
    /// No server could be reached.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// Servers were reached but none leads (an election is under way), or none answered.
    #[error("no Meridian leader: {0}")]
    NoLeader(String),
    /// TLS files could not be read or do not go together.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server's answer lacked a required field.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl ClientError {
    /// The gRPC code, if the server answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}
