//! Errors of the city server (mapped to gRPC codes in `proto::status`).

use crate::model::ValidationError;
use crate::store::{BatchRejected, OfficeError, RetryError, StoreError};

/// Why a city operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CityError {
    /// The request is malformed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The caller's certificate does not allow this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The replication stream broke the protocol (e.g. no Hello first).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A batch could not be applied in order.
    #[error(transparent)]
    Rejected(#[from] BatchRejected),
    /// A data-office write was not made.
    #[error(transparent)]
    Office(#[from] OfficeError),
    /// A quarantined change could not be retried or discarded.
    #[error(transparent)]
    Quarantine(#[from] RetryError),
    /// Storage failed or is full.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A newer replication stream of the same ward took this one's place.
    #[error("replaced by a newer replication stream from ward {0}")]
    Replaced(crate::model::WardCode),
    /// The server is stopping.
    #[error("the city server is shutting down")]
    ShuttingDown,
}
