//! Domain types and rules: record kinds and keys, records, changes.
//!
//! Pure: no I/O, no prost, no sled. Everything here can be unit-tested
//! with plain values, and the gRPC and storage layers convert to and from it.

mod change;
mod key;
mod record;
mod validation;

pub use change::{Change, Op};
pub use key::{Kind, RecordKey, WardCode};
pub use record::{Body, Business, Citizen, LandParcel, Record};
pub use validation::{FieldViolation, ValidationError};
