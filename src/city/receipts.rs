//! Receipts: the city's own evidence of what it told a ward.
//!
//! With every ack and every downstream message the city hands the ward a
//! receipt: an HMAC-SHA256, under a key only the city holds, of what it
//! said ("I applied your changes up to 120"; "my log held the change
//! checked 0x51f0… at cursor 3,407"). The ward keeps the last of each and
//! gives them back in `Hello`. A ward that says the city lost data
//! (acknowledged changes it no longer holds, a logged change no longer at
//! its cursor) is believed only as far as a receipt proves: a claim alone
//! opens no refill window, the exception that lets a ward write what is
//! not its own.
//!
//! A receipt is checkable by the city only (a MAC, not a signature): it
//! proves to the city what the city itself once said, which is all a loss
//! claim needs. Its key is derived from the city's TLS private key, kept
//! apart from the city's data: a city put back to any older copy of its
//! data, or to none (a new disk), still checks the receipts it gave, and
//! city processes that share the city's key (as they share its name) check
//! each other's. A key renewed and reloaded (SIGHUP) makes the receipts
//! from then on; those made with the keys before still check until the
//! process stops. (With `insecure_dev`, which trusts a ward's word for its
//! identity anyway, a fixed key.)
//!
//! A receipt also carries, in clear and under the MAC:
//! - the ward's loss generation when it was made (when the city last
//!   recorded a loss of that ward's, 0 for never). It proves a loss only
//!   while no later loss has been recorded: once one is, the receipts that
//!   proved it prove nothing more, so a ward cannot keep a refill window
//!   open by giving an old receipt back again. (A city put back to a copy
//!   from before a loss has an older generation, and still takes them.)
//! - for an ack, the first sequence it can speak for: the one after the
//!   last the ward's numbering moved past on its word alone, so a receipt
//!   of a later ack never proves the city applied those.

use std::sync::{Arc, RwLock};

use ring::hmac;

use crate::auth::TlsFiles;
use crate::model::WardCode;

/// What a receipt's MAC covers first: the purpose and format version, so
/// a receipt of one kind never passes for another.
const DOMAIN: &[u8] = b"wardsync receipt v1\0";

/// Makes and checks the city's receipts.
#[derive(Clone)]
pub struct Receipts {
    /// The key receipts are made with, then those before it (newest first).
    keys: Arc<RwLock<Vec<hmac::Key>>>,
}

/// Keys a process keeps to check receipts: the current and three before.
const KEYS_KEPT: usize = 4;

/// What a receipt key is derived from, with the private key.
const DERIVATION: &[u8] = b"wardsync receipt key v1";

impl std::fmt::Debug for Receipts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipts(..)")
    }
}

impl Receipts {
    /// Receipts with the key derived from the city's private key in
    /// `files`, or (no TLS: `insecure_dev`) a fixed one.
    pub fn new(files: Option<&TlsFiles>) -> anyhow::Result<Receipts> {
        let key = match files {
            Some(files) => key_of(files)?,
            None => hmac::Key::new(hmac::HMAC_SHA256, b"insecure_dev"),
        };
        Ok(Receipts { keys: Arc::new(RwLock::new(vec![key])) })
    }

    /// Makes receipts from now on with the key derived from the private
    /// key in `files` (renewed and reloaded), still checking those made
    /// with the keys before.
    pub fn reload(&self, files: &TlsFiles) -> anyhow::Result<()> {
        let key = key_of(files)?;
        let mut keys = self.keys.write().expect("poisoned");
        let probe = hmac::sign(&key, DOMAIN);
        if hmac::verify(&keys[0], DOMAIN, probe.as_ref()).is_err() {
            keys.insert(0, key);
            keys.truncate(KEYS_KEPT);
        }
        Ok(())
    }

    /// The receipts for `ward` in loss generation `generation`, whose ack
    /// receipts speak for sequences from `from`.
    pub fn for_ward(&self, ward: &WardCode, generation: i64, from: u64) -> WardReceipts {
        WardReceipts { receipts: self.clone(), ward: ward.clone(), generation, from }
    }
}

/// The receipt key derived from the private key in `files`.
fn key_of(files: &TlsFiles) -> anyhow::Result<hmac::Key> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let private = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow::anyhow!("cannot read private key {}: {e}", files.key.display()))?;
    let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, private.secret_der()), DERIVATION);
    Ok(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
}

/// The receipts the city makes and checks for one ward, in one loss
/// generation (see the module docs).
#[derive(Clone, Debug)]
pub struct WardReceipts {
    receipts: Receipts,
    ward: WardCode,
    generation: i64,
    /// The first sequence an ack receipt speaks for.
    from: u64,
}

/// Bytes of a receipt: generation and first sequence, then the MAC.
const RECEIPT_LEN: usize = 16 + 32;

impl WardReceipts {
    /// The ward's loss generation: when the city last recorded a loss of
    /// the ward's (0: never).
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The receipt for "the city applied the ward's changes up to `seq`".
    pub fn ack(&self, seq: u64) -> Vec<u8> {
        self.sign(&ack_message(&self.ward, seq))
    }

    /// If `receipt` is the city's for the ward's changes up to `seq`, made
    /// in this loss generation or a later one, the first sequence it
    /// speaks for.
    pub fn proves_ack(&self, seq: u64, receipt: &[u8]) -> Option<u64> {
        self.verify(&ack_message(&self.ward, seq), receipt)
    }

    /// The receipt for "the city's log held the change checked `check` at
    /// `cursor`", handed to the ward.
    pub fn downstream(&self, cursor: u64, check: u64) -> Vec<u8> {
        self.sign(&downstream_message(&self.ward, cursor, check))
    }

    /// True if `receipt` is the city's for the change checked `check` at
    /// `cursor`, handed to the ward in this loss generation or a later one.
    pub fn proves_downstream(&self, cursor: u64, check: u64, receipt: &[u8]) -> bool {
        self.verify(&downstream_message(&self.ward, cursor, check), receipt).is_some()
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let header = [self.generation.to_be_bytes(), self.from.to_be_bytes()].concat();
        let keys = self.receipts.keys.read().expect("poisoned");
        let mac = hmac::sign(&keys[0], &[message, &header].concat());
        [&header[..], mac.as_ref()].concat()
    }

    fn verify(&self, message: &[u8], receipt: &[u8]) -> Option<u64> {
        if receipt.len() != RECEIPT_LEN {
            return None;
        }
        let (header, mac) = receipt.split_at(16);
        let generation = i64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let from = u64::from_be_bytes(header[8..].try_into().expect("8 bytes"));
        let signed = [message, header].concat();
        let keys = self.receipts.keys.read().expect("poisoned");
        (generation >= self.generation && keys.iter().any(|k| hmac::verify(k, &signed, mac).is_ok()))
            .then_some(from)
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

    /// The city's TLS files of a new dev CA in `dir` (its key: `city.key`).
    fn city_files(dir: &std::path::Path) -> TlsFiles {
        let files = TlsFiles::in_dir(dir, "city");
        if !files.key.exists() {
            crate::auth::DevCa::open_or_create(dir).unwrap().issue_city().unwrap();
        }
        files
    }

    #[test]
    fn a_receipt_proves_only_what_it_was_made_for() {
        let dir = tempfile::tempdir().unwrap();
        let city = Receipts::new(Some(&city_files(dir.path()))).unwrap();
        let (w, other) = (city.for_ward(&ward("00082"), 0, 1), city.for_ward(&ward("00145"), 0, 1));
        let ack = w.ack(120);
        assert_eq!(ack.len(), RECEIPT_LEN);
        assert_eq!(w.proves_ack(120, &ack), Some(1));
        assert_eq!(w.proves_ack(121, &ack), None, "another sequence");
        assert_eq!(other.proves_ack(120, &ack), None, "another ward");
        assert_eq!(w.proves_ack(120, &[]), None, "no receipt");
        assert_eq!(w.proves_ack(120, &ack[..32]), None, "a cut receipt");
        let down = w.downstream(3_407, 0x51f0);
        assert!(w.proves_downstream(3_407, 0x51f0, &down));
        assert!(!w.proves_downstream(3_408, 0x51f0, &down), "another cursor");
        assert!(!w.proves_downstream(3_407, 0x51f1, &down), "another change");
        assert!(!other.proves_downstream(3_407, 0x51f0, &down), "another ward");
        // A receipt of one kind never passes for the other.
        assert!(!w.proves_downstream(120, 0, &ack));
        // Its clear part cannot be changed: not the first sequence it
        // speaks for, nor its generation.
        for at in [7, 15] {
            let mut bent = ack.clone();
            bent[at] ^= 1;
            assert_eq!(w.proves_ack(120, &bent), None, "byte {at} changed");
        }
        // Nor does it prove anything once a loss was recorded after it was
        // made; a city put back to before its generation takes it.
        let later = city.for_ward(&ward("00082"), 1_780_000_000_000, 1);
        assert!(later.proves_ack(120, &ack).is_none() && !later.proves_downstream(3_407, 0x51f0, &down));
        let made_later = later.ack(120);
        assert_eq!(w.proves_ack(120, &made_later), Some(1));
        // Ack receipts speak for sequences from the one they were made for.
        assert_eq!(
            city.for_ward(&ward("00082"), 0, 111).ack(120).get(8..16),
            Some(&111u64.to_be_bytes()[..])
        );
        // A city process started again (or another one) with the city's key
        // checks them; only the city's key makes them.
        let again = Receipts::new(Some(&city_files(dir.path()))).unwrap().for_ward(&ward("00082"), 0, 1);
        assert_eq!(again.proves_ack(120, &ack), Some(1));
        let elsewhere = tempfile::tempdir().unwrap();
        let forger =
            Receipts::new(Some(&city_files(elsewhere.path()))).unwrap().for_ward(&ward("00082"), 0, 1);
        assert!(w.proves_ack(120, &forger.ack(120)).is_none() && forger.proves_ack(120, &ack).is_none());
    }

    #[test]
    fn a_renewed_key_makes_receipts_and_the_one_before_still_checks_its_own() {
        let (dir, renewed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let city = Receipts::new(Some(&city_files(dir.path()))).unwrap();
        let old = city.for_ward(&ward("00082"), 0, 1).ack(7);
        city.reload(&city_files(renewed.path())).unwrap();
        let w = city.for_ward(&ward("00082"), 0, 1);
        assert!(w.proves_ack(7, &old).is_some(), "a receipt made before the renewal");
        let new = w.ack(7);
        assert_ne!(new, old, "made with the renewed key");
        let fresh = Receipts::new(Some(&city_files(renewed.path()))).unwrap().for_ward(&ward("00082"), 0, 1);
        assert!(fresh.proves_ack(7, &new).is_some());
        // Reloading the same key again keeps the one before.
        city.reload(&city_files(renewed.path())).unwrap();
        assert!(city.for_ward(&ward("00082"), 0, 1).proves_ack(7, &old).is_some());
    }
}
