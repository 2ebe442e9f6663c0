//! Domain types and rules: record kinds and keys, records and their
//! validation, changes and the ownership rule, reference data, text folding.
//!
//! Pure: no I/O, no prost, no sled. What validation needs from the world
//! (today's date, the city's province) comes in a [`Context`]. Everything
//! here can be unit-tested with plain values.

mod change;
pub mod civil;
pub mod digest;
mod enums;
mod event_form;
mod hlc;
mod ids;
#[cfg(test)]
mod input_tests;
mod key;
mod merge;
pub mod office_request;
mod record;
#[cfg(test)]
mod record_tests;
pub mod reference;
pub mod signed;
pub mod strict;
mod text;
mod validation;

pub use change::{
    Change, MAX_CONTEXT, Op, Standing, TRANSFER_FIELDS, beyond_transfer, deleted, is_writer, put_values,
    transfer_overreach, wrote_as_owner,
};
pub use enums::{
    BusinessForm, BusinessStatus, EventKind, LAND_USE_CODES, MaritalStatus, RegistrationKind, Relationship,
    Sex, check_land_use,
};
pub use hlc::{CITY_WRITER, CLOCK_AHEAD_LIMIT_MS, Hlc, Stamp, VersionVector, WriterId};
pub use ids::{
    century_sex_digit, check_enterprise_code, check_personal_id, check_personal_id_matches,
    enterprise_check_digit,
};
pub use key::{Kind, RecordKey, WardCode};
pub use merge::{
    EXISTS, FieldConflict, FieldWrite, OWNER, Policies, Policy, Versioned, field_names, flatten, unflatten,
};
pub use record::{
    Body, Business, Citizen, CivilEvent, Context, LandParcel, LandRegistration, Record, Residence,
};
pub use text::fold;
pub use validation::{FieldViolation, ValidationError};
