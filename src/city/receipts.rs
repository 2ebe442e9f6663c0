//! Receipts: the city's own evidence of what it told a ward.
//!
//! With every ack and every downstream message the city hands the ward a
//! receipt: an HMAC-SHA256, under a secret only the city holds
//! ([`crate::store::CityDb::receipt_secret`]), of what it said ("I applied
//! your changes up to 120"; "my log held the change checked 0x51f0… at
//! cursor 3,407"). The ward keeps the last of each and gives them back in
//! `Hello`. A ward that says the city lost data (acknowledged changes it
//! no longer holds, a logged change no longer at its cursor) is believed
//! only as far as a receipt proves: a claim alone opens no refill window,
//! the exception that lets a ward write what is not its own.
//!
//! A receipt is checkable by the city only (a MAC, not a signature): it
//! proves to the city what the city itself once said, which is all a loss
//! claim needs. The secret is kept with the city's data, so a city put
//! back to an older copy still checks the receipts it gave before the
//! copy's moment and after it.

use ring::hmac;

use crate::model::WardCode;

/// What a receipt's MAC covers first: the purpose and format version, so
/// a receipt of one kind never passes for another.
const DOMAIN: &[u8] = b"wardsync receipt v1\0";

/// Makes and checks the city's receipts.
#[derive(Clone)]
pub struct Receipts {
    key: hmac::Key,
}

impl std::fmt::Debug for Receipts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipts(..)")
    }
}

impl Receipts {
    /// Receipts under `secret` (the city's receipt secret).
    pub fn new(secret: &[u8]) -> Receipts {
        Receipts { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    /// The receipt for "the city applied `ward`'s changes up to `seq`".
    pub fn ack(&self, ward: &WardCode, seq: u64) -> Vec<u8> {
        hmac::sign(&self.key, &ack_message(ward, seq)).as_ref().to_vec()
    }

    /// True if `receipt` is the city's for `ward`'s changes up to `seq`.
    pub fn proves_ack(&self, ward: &WardCode, seq: u64, receipt: &[u8]) -> bool {
        hmac::verify(&self.key, &ack_message(ward, seq), receipt).is_ok()
    }

    /// The receipt for "the city's log held the change checked `check`
    /// at `cursor`", handed to `ward`.
    pub fn downstream(&self, ward: &WardCode, cursor: u64, check: u64) -> Vec<u8> {
        hmac::sign(&self.key, &downstream_message(ward, cursor, check)).as_ref().to_vec()
    }

    /// True if `receipt` is the city's for the change checked `check` at
    /// `cursor`, handed to `ward`.
    pub fn proves_downstream(&self, ward: &WardCode, cursor: u64, check: u64, receipt: &[u8]) -> bool {
        hmac::verify(&self.key, &downstream_message(ward, cursor, check), receipt).is_ok()
    }
}

fn ack_message(ward: &WardCode, seq: u64) -> Vec<u8> {
    [DOMAIN, b"ack\0", ward.as_str().as_bytes(), b"\0", &seq.to_be_bytes()].concat()
}

fn downstream_message(ward: &WardCode, cursor: u64, check: u64) -> Vec<u8> {
    [DOMAIN, b"downstream\0", ward.as_str().as_bytes(), b"\0", &cursor.to_be_bytes(), &check.to_be_bytes()]
        .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ward(code: &str) -> WardCode {
        WardCode::parse(code).unwrap()
    }

    #[test]
    fn a_receipt_proves_only_what_it_was_made_for() {
        let city = Receipts::new(&[7; 32]);
        let (w, other) = (ward("00082"), ward("00145"));
        let ack = city.ack(&w, 120);
        assert!(city.proves_ack(&w, 120, &ack));
        assert!(!city.proves_ack(&w, 121, &ack), "another sequence");
        assert!(!city.proves_ack(&other, 120, &ack), "another ward");
        assert!(!city.proves_ack(&w, 120, &[]), "no receipt");
        assert!(!city.proves_ack(&w, 120, &ack[..16]), "a cut receipt");
        let down = city.downstream(&w, 3_407, 0x51f0);
        assert!(city.proves_downstream(&w, 3_407, 0x51f0, &down));
        assert!(!city.proves_downstream(&w, 3_408, 0x51f0, &down), "another cursor");
        assert!(!city.proves_downstream(&w, 3_407, 0x51f1, &down), "another change");
        assert!(!city.proves_downstream(&other, 3_407, 0x51f0, &down), "another ward");
        // A receipt of one kind never passes for the other.
        assert!(!city.proves_downstream(&w, 120, 0, &ack));
        // Only the city's secret makes them.
        let forger = Receipts::new(&[8; 32]);
        assert!(!city.proves_ack(&w, 120, &forger.ack(&w, 120)));
    }
}
