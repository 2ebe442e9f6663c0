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
//!
//! A receipt also names the ward's loss generation when it was made (when
//! the city last recorded a loss of that ward's, 0 for never): it proves a
//! loss only while that is still the ward's generation. Once a loss is
//! recorded, the receipts that proved it prove nothing more, so a ward
//! cannot keep a refill window open by giving an old receipt back again.

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

    /// The receipts for `ward` in loss generation `generation`.
    pub fn for_ward(&self, ward: &WardCode, generation: i64) -> WardReceipts {
        WardReceipts { receipts: self.clone(), ward: ward.clone(), generation }
    }
}

/// The receipts the city makes and checks for one ward, in one loss
/// generation (see the module docs).
#[derive(Clone, Debug)]
pub struct WardReceipts {
    receipts: Receipts,
    ward: WardCode,
    generation: i64,
}

impl WardReceipts {
    /// The receipt for "the city applied the ward's changes up to `seq`".
    pub fn ack(&self, seq: u64) -> Vec<u8> {
        self.sign(&ack_message(&self.ward, seq))
    }

    /// True if `receipt` is the city's for the ward's changes up to `seq`.
    pub fn proves_ack(&self, seq: u64, receipt: &[u8]) -> bool {
        self.verify(&ack_message(&self.ward, seq), receipt)
    }

    /// The receipt for "the city's log held the change checked `check` at
    /// `cursor`", handed to the ward.
    pub fn downstream(&self, cursor: u64, check: u64) -> Vec<u8> {
        self.sign(&downstream_message(&self.ward, cursor, check))
    }

    /// True if `receipt` is the city's for the change checked `check` at
    /// `cursor`, handed to the ward.
    pub fn proves_downstream(&self, cursor: u64, check: u64, receipt: &[u8]) -> bool {
        self.verify(&downstream_message(&self.ward, cursor, check), receipt)
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let message = [message, &self.generation.to_be_bytes()].concat();
        hmac::sign(&self.receipts.key, &message).as_ref().to_vec()
    }

    fn verify(&self, message: &[u8], receipt: &[u8]) -> bool {
        let message = [message, &self.generation.to_be_bytes()].concat();
        hmac::verify(&self.receipts.key, &message, receipt).is_ok()
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
        let (w, other) = (city.for_ward(&ward("00082"), 0), city.for_ward(&ward("00145"), 0));
        let ack = w.ack(120);
        assert!(w.proves_ack(120, &ack));
        assert!(!w.proves_ack(121, &ack), "another sequence");
        assert!(!other.proves_ack(120, &ack), "another ward");
        assert!(!w.proves_ack(120, &[]), "no receipt");
        assert!(!w.proves_ack(120, &ack[..16]), "a cut receipt");
        let down = w.downstream(3_407, 0x51f0);
        assert!(w.proves_downstream(3_407, 0x51f0, &down));
        assert!(!w.proves_downstream(3_408, 0x51f0, &down), "another cursor");
        assert!(!w.proves_downstream(3_407, 0x51f1, &down), "another change");
        assert!(!other.proves_downstream(3_407, 0x51f0, &down), "another ward");
        // A receipt of one kind never passes for the other.
        assert!(!w.proves_downstream(120, 0, &ack));
        // Nor for the ward once a loss was recorded since it was made.
        let later = city.for_ward(&ward("00082"), 1_780_000_000_000);
        assert!(!later.proves_ack(120, &ack) && !later.proves_downstream(3_407, 0x51f0, &down));
        // Only the city's secret makes them.
        let forger = Receipts::new(&[8; 32]).for_ward(&ward("00082"), 0);
        assert!(!w.proves_ack(120, &forger.ack(120)));
    }
}
