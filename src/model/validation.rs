//! Validation errors that name every offending field.

use std::fmt;

/// One field that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `record.citizen.personal_id`.
    pub field: String,
    /// Why the value is not acceptable, in words a clerk can act on.
    pub reason: String,
}

/// Every violation found in one request; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationError {
    /// The violations, in the order the fields were checked.
    pub violations: Vec<FieldViolation>,
}

impl ValidationError {
    /// Records a violation of `field`.
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.violations.push(FieldViolation { field: field.into(), reason: reason.into() });
    }

    /// `Ok(())` when nothing was recorded, otherwise `Err(self)`.
    pub fn into_result(self) -> Result<(), ValidationError> {
        if self.violations.is_empty() { Ok(()) } else { Err(self) }
    }

    /// A single-violation error.
    pub fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut e = Self::default();
        e.add(field, reason);
        e
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid request: ")?;
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{}: {}", v.field, v.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}
