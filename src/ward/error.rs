//! Errors of the ward agent (mapped to gRPC codes in `proto::status`).

use crate::model::{RecordKey, ValidationError, WardCode};
use crate::store::StoreError;

/// Why a ward agent operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WardError {
    /// The request is malformed; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The record belongs to another ward; nothing was stored.
    #[error(
        "{key} is owned by ward {owner}; this agent serves ward {this} and writes only its own records \
         (a person who moved here is taken over with a residence transfer: wardsync put --transfer)"
    )]
    NotOwned {
        /// The record.
        key: RecordKey,
        /// Its owner.
        owner: WardCode,
        /// The ward this agent serves.
        this: WardCode,
    },
    /// No such record here.
    #[error("{0} not found")]
    NotFound(RecordKey),
    /// No such record anywhere in the city.
    #[error("{0} not found anywhere in the city")]
    NotFoundInCity(RecordKey),
    /// The city could not answer a look-up.
    #[error("the city cannot be reached to look up records of other wards: {0}")]
    CityUnreachable(String),
    /// Comparing this ward's records with the city's copy could not complete.
    #[error("verification against the city did not complete: {0}; it runs again on schedule, or retry")]
    VerifyFailed(String),
    /// A registrar would refuse this registration; nothing was stored.
    #[error("not registered: {0}")]
    RegistrarRefused(String),
    /// Storage failed or is full.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The agent is stopping.
    #[error("the ward agent is shutting down")]
    ShuttingDown,
}
