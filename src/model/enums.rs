//! Closed enumerations of the record schemas. Each has a lower-case text
//! form used in JSON, CSV and messages.

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the text form; the error lists the accepted values.
            pub fn parse(s: &str) -> Result<$name, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "{other:?} is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Sex as recorded in the civil-status register.
    Sex {
        /// Male.
        Male = "male",
        /// Female.
        Female = "female",
    }
);

text_enum!(
    /// Marital status.
    MaritalStatus {
        /// Never married.
        Single = "single",
        /// Married.
        Married = "married",
        /// Divorced.
        Divorced = "divorced",
        /// Widowed.
        Widowed = "widowed",
    }
);

text_enum!(
    /// Relationship to the head of the household.
    Relationship {
        /// The household head.
        Head = "head",
        /// Wife or husband of the head.
        Spouse = "spouse",
        /// Child of the head.
        Child = "child",
        /// Parent of the head.
        Parent = "parent",
        /// Grandchild of the head.
        Grandchild = "grandchild",
        /// Brother or sister of the head.
        Sibling = "sibling",
        /// Any other relative or co-resident.
        Other = "other",
    }
);

text_enum!(
    /// Civil-status events.
    EventKind {
        /// Birth registration.
        Birth = "birth",
        /// Marriage registration.
        Marriage = "marriage",
        /// Divorce recorded.
        Divorce = "divorce",
        /// Death registration.
        Death = "death",
        /// A registered correction of the person's name, date of birth or
        /// sex (Law on Civil Status, art. 7: "cải chính hộ tịch").
        Correction = "correction",
    }
);

text_enum!(
    /// Legal form of a business.
    BusinessForm {
        /// An enterprise (10-digit code).
        Enterprise = "enterprise",
        /// A branch of an enterprise (code with a -NNN suffix).
        Branch = "branch",
        /// A household business.
        Household = "household",
    }
);

text_enum!(
    /// Registration status of a business.
    BusinessStatus {
        /// Operating.
        Active = "active",
        /// Temporarily suspended.
        Suspended = "suspended",
        /// Dissolved or closed.
        Dissolved = "dissolved",
    }
);

text_enum!(
    /// Registrations recorded against a land parcel.
    RegistrationKind {
        /// A mortgage is registered.
        Mortgage = "mortgage",
        /// A mortgage is released.
        MortgageRelease = "mortgage-release",
        /// Ownership is transferred by sale.
        Transfer = "transfer",
        /// Ownership passes by inheritance.
        Inheritance = "inheritance",
        /// Ownership passes as a gift.
        Gift = "gift",
    }
);

/// Land-use type codes (Circular 08/2024/TT-BTNMT and its predecessors):
/// the closed list a parcel's `land_use_type` must come from.
pub const LAND_USE_CODES: &[&str] = &[
    "LUC", "LUK", "LUN", "BHK", "NHK", "CLN", "RSX", "RPH", "RDD", "NTS", "LMU", "NKH", "ONT", "ODT", "TSC",
    "DTS", "DVH", "DXH", "DYT", "DGD", "DTT", "DKH", "DNG", "CQP", "CAN", "SKK", "SKN", "SKT", "TMD", "SKC",
    "SKS", "SKX", "DGT", "DTL", "DDT", "DDL", "DNL", "DBV", "DSH", "DKV", "DCH", "DRA", "DCK", "TON", "TIN",
    "NTD", "SON", "MNC", "PNK", "BCS", "DCS", "NCS",
];

/// Checks a land-use type code against [`LAND_USE_CODES`].
pub fn check_land_use(code: &str) -> Result<(), String> {
    if LAND_USE_CODES.contains(&code) {
        Ok(())
    } else {
        Err(format!("{code:?} is not a land-use type code (e.g. ODT, ONT, LUC, CLN)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip_and_errors_list_the_choices() {
        for s in MaritalStatus::ALL {
            assert_eq!(MaritalStatus::parse(s.as_str()), Ok(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        let e = RegistrationKind::parse("lease").unwrap_err();
        assert!(e.contains("mortgage-release"), "{e}");
        assert!(check_land_use("ODT").is_ok());
        assert!(check_land_use("odt").is_err());
    }
}
