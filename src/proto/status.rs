//! The one place where errors of every layer become gRPC status codes.

use tonic::{Code, Status};

use crate::city::CityError;
use crate::model::ValidationError;
use crate::store::StoreError;
use crate::ward::WardError;

impl From<ValidationError> for Status {
    fn from(e: ValidationError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        let code = match e {
            StoreError::Full(_) => Code::ResourceExhausted,
            StoreError::Io(_) => Code::Unavailable,
            StoreError::Corrupt { .. } => Code::DataLoss,
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
            WardError::NotFound(_) => Status::not_found(e.to_string()),
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
            CityError::Rejected(_) => Status::failed_precondition(e.to_string()),
            CityError::ShuttingDown => Status::unavailable(e.to_string()),
        }
    }
}
