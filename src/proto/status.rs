//! The one place where errors of every layer become gRPC status codes.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::city::CityError;
use crate::model::ValidationError;
use crate::store::{BatchRejected, OfficeError, RetryError, StoreError};
use crate::ward::WardError;

/// `INVALID_ARGUMENT` naming every violation in the message and, for
/// programs, as `google.rpc.BadRequest` field violations in the details.
impl From<ValidationError> for Status {
    fn from(e: ValidationError) -> Status {
        let violations = e
            .violations
            .iter()
            .map(|v| FieldViolation::new(v.field.clone(), v.reason.clone()))
            .collect::<Vec<_>>();
        Status::with_error_details(
            Code::InvalidArgument,
            e.to_string(),
            ErrorDetails::with_bad_request(violations),
        )
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        let code = match e {
            StoreError::Full(_) => Code::ResourceExhausted,
            StoreError::Io(_) => Code::Unavailable,
            StoreError::Corrupt { .. } => Code::DataLoss,
            StoreError::TooLarge(_) => Code::FailedPrecondition,
            StoreError::Refused(_) => Code::InvalidArgument,
        };
        Status::new(code, e.to_string())
    }
}

impl From<WardError> for Status {
    fn from(e: WardError) -> Status {
        match e {
            WardError::Invalid(v) => v.into(),
            WardError::Store(s) => s.into(),
            WardError::NotOwned { .. } => Status::permission_denied(e.to_string()),
            WardError::NotFound(_) | WardError::NotFoundInCity(_) => Status::not_found(e.to_string()),
            WardError::CityUnreachable(_) | WardError::VerifyFailed(_) => Status::unavailable(e.to_string()),
            WardError::RegistrarRefused(_) => Status::failed_precondition(e.to_string()),
            WardError::ShuttingDown => Status::unavailable(e.to_string()),
        }
    }
}

impl From<CityError> for Status {
    fn from(e: CityError) -> Status {
        match e {
            CityError::Invalid(v) => v.into(),
            CityError::Store(s) => s.into(),
            CityError::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            CityError::Protocol(_) => Status::failed_precondition(e.to_string()),
            CityError::Rejected(BatchRejected::QuarantineFull { .. }) => {
                Status::resource_exhausted(e.to_string())
            }
            CityError::Rejected(_) => Status::failed_precondition(e.to_string()),
            CityError::Quarantine(RetryError::NotFound { .. }) => Status::not_found(e.to_string()),
            CityError::Quarantine(_) => Status::failed_precondition(e.to_string()),
            CityError::Office(OfficeError::Invalid(v)) => v.into(),
            CityError::Office(OfficeError::NotFound(_)) => Status::not_found(e.to_string()),
            CityError::Office(OfficeError::NoConflict(..)) => Status::failed_precondition(e.to_string()),
            CityError::Office(OfficeError::Quarantine(r)) => CityError::Quarantine(r).into(),
            CityError::ShuttingDown => Status::unavailable(e.to_string()),
            CityError::Replaced(_) => Status::aborted(e.to_string()),
        }
    }
}
