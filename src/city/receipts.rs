//! Receipts: the city's own signed evidence of what it told a ward.
//!
//! With every ack, `Welcome` and downstream message the city hands the ward
//! a receipt: a statement signed with the city's certificate key (ECDSA
//! P-256, as a ward signs its chain) of what it said ("I applied your
//! changes up to 120, whose link is ..."; "my log held the change checked
//! 0x51f0... at cursor 3,407"), naming this city database (its id: made
//! once, differing per deployment, kept by a restore) and the key, and
//! carrying a checkpoint of the log: its durable end and running hash
//! there (the id is for those who check receipts against a database: the
//! city itself takes any its key made). The ward keeps the last of each
//! and gives them back in `Hello`;
//! anyone with the city's certificate can check one, so what a ward holds
//! is a witness of what the city's log was (`wardsync audit verify
//! --witness`). A ward that says the city lost data (acknowledged changes
//! it no longer holds, a logged change no longer at its cursor) is believed
//! only as far as a receipt proves: a claim alone opens no refill window.
//!
//! The city checks receipts with its own keys: the one of its certificate
//! now and the three before it in this process (a key renewed and reloaded
//! with SIGHUP signs from then on). A city put back to an older copy of
//! its data, or to none, still checks the receipts it gave, and city
//! processes that share the city's key check each other's. (With
//! `insecure_dev`, which trusts a ward's word for its identity anyway, a
//! fixed key whose receipts prove nothing to anyone else.)
//!
//! A receipt also carries, under the signature:
//! - the ward's loss generation when it was made (when the city last
//!   recorded a loss of that ward's, 0 for never). It proves a loss only
//!   while no later loss has been recorded, so a ward cannot keep a refill
//!   window open by giving an old receipt back again. (A city put back to
//!   a copy from before a loss has an older generation, and still takes
//!   them.)
//! - for an ack, the first sequence it can speak for: the one after the
//!   last the ward's numbering moved past on its word alone, so a receipt
//!   of a later ack never proves the city applied those.
//! - the city's time when it was made (advisory).

use std::sync::{Arc, RwLock};

use crate::auth::{Signer, TlsFiles};
use crate::model::WardCode;
use crate::model::signed::{Hash, KeyId};

/// Starts what a receipt signs: its purpose and format.
const TAG: &[u8] = b"wardsync/receipt";

/// The format of a receipt.
const FORMAT: u8 = 1;

/// Starts what the city signs of a change it derived from an office request.
const DERIVED_TAG: &[u8] = b"wardsync/derived";

/// What the city signs of the change `change` derived from the request `request`.
fn derived_message(request: &[u8; 16], change: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(DERIVED_TAG.len() + 48);
    m.extend_from_slice(DERIVED_TAG);
    m.extend_from_slice(request);
    m.extend_from_slice(change);
    m
}

/// Keys a process keeps to check receipts: the current and three before.
const KEYS_KEPT: usize = 4;

/// Bytes of a signature.
const SIGNATURE_LEN: usize = 64;

/// What a receipt says the city did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// It applied the ward's changes up to `seq`, whose link is `link`
    /// (zero: not known).
    Ack {
        /// The last sequence applied.
        seq: u64,
        /// The ward's link there.
        link: Hash,
    },
    /// Its log held the change checked `check` at `cursor`.
    Downstream {
        /// The log cursor.
        cursor: u64,
        /// The change's check ([`crate::store::LoggedChange::check`]).
        check: u64,
    },
}

/// A receipt, read: what the city signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The city database's id.
    pub city: [u8; 16],
    /// The key that signed it.
    pub key: KeyId,
    /// The ward it was made for.
    pub ward: WardCode,
    /// What it says.
    pub said: Said,
    /// The durable end of the city's log when it was made, and the log's
    /// running hash there: a checkpoint of the log.
    pub head: (u64, Hash),
    /// The ward's loss generation.
    pub generation: i64,
    /// For an ack, the first sequence it speaks for.
    pub from: u64,
    /// The city's time when it was made, ms since the epoch (advisory).
    pub at_ms: i64,
}

impl Receipt {
    /// What is signed: every field, in a fixed layout.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(200);
        m.extend_from_slice(&(TAG.len() as u32).to_be_bytes());
        m.extend_from_slice(TAG);
        m.push(FORMAT);
        m.extend_from_slice(&self.city);
        m.extend_from_slice(&self.key.0);
        m.extend_from_slice(self.ward.as_str().as_bytes()); // 5 digits
        let (kind, a, b, link) = match self.said {
            Said::Ack { seq, link } => (1u8, seq, 0, link),
            Said::Downstream { cursor, check } => (2, cursor, check, [0; 32]),
        };
        m.push(kind);
        m.extend_from_slice(&a.to_be_bytes());
        m.extend_from_slice(&b.to_be_bytes());
        m.extend_from_slice(&link);
        m.extend_from_slice(&self.head.0.to_be_bytes());
        m.extend_from_slice(&self.head.1);
        m.extend_from_slice(&self.generation.to_be_bytes());
        m.extend_from_slice(&self.from.to_be_bytes());
        m.extend_from_slice(&self.at_ms.to_be_bytes());
        m
    }

    /// Reads a receipt's bytes: the receipt and its signature, if they are
    /// one of this format.
    pub fn parse(bytes: &[u8]) -> Option<(Receipt, &[u8])> {
        let body_len = 4 + TAG.len() + 1 + 16 + 32 + 5 + 1 + 8 + 8 + 32 + 8 + 32 + 8 + 8 + 8;
        if bytes.len() != body_len + SIGNATURE_LEN {
            return None;
        }
        let (body, signature) = bytes.split_at(body_len);
        let mut at = 4 + TAG.len();
        if body[..at] != [&(TAG.len() as u32).to_be_bytes()[..], TAG].concat() || body[at] != FORMAT {
            return None;
        }
        at += 1;
        let mut take = |n: usize| {
            let part = &body[at..at + n];
            at += n;
            part
        };
        let city: [u8; 16] = take(16).try_into().ok()?;
        let key = KeyId(take(32).try_into().ok()?);
        let ward = WardCode::parse(std::str::from_utf8(take(5)).ok()?).ok()?;
        let kind = take(1)[0];
        let u64_of = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        let (a, b) = (u64_of(take(8)), u64_of(take(8)));
        let link: Hash = take(32).try_into().ok()?;
        let said = match kind {
            1 => Said::Ack { seq: a, link },
            2 => Said::Downstream { cursor: a, check: b },
            _ => return None,
        };
        let head = (u64_of(take(8)), take(32).try_into().ok()?);
        let generation = u64_of(take(8)) as i64;
        let from = u64_of(take(8));
        let at_ms = u64_of(take(8)) as i64;
        let receipt = Receipt { city, key, ward, said, head, generation, from, at_ms };
        Some((receipt, signature))
    }
}

impl Receipt {
    /// The receipt in `bytes` if the city signed it: with the key of one of
    /// `certs` (key id, certificate DER), or, for a city without TLS
    /// (`insecure`), its fixed key. Else why not, for a person to read.
    pub fn checked(
        bytes: &[u8],
        certs: &[(KeyId, Vec<u8>)],
        insecure: bool,
    ) -> Result<Receipt, &'static str> {
        let (receipt, signature) = Receipt::parse(bytes).ok_or("not a receipt of the city's")?;
        city_signed(&receipt.key.0, &receipt.signed_message(), signature, certs, insecure)?;
        Ok(receipt)
    }
}

/// Checks that `signature` of `message` was made with the city's key `key`
/// (id), one of whose certificates `certs` holds (key id, DER); or, with
/// `insecure`, the fixed key of a city without TLS.
fn city_signed(
    key: &[u8],
    message: &[u8],
    signature: &[u8],
    certs: &[(KeyId, Vec<u8>)],
    insecure: bool,
) -> Result<(), &'static str> {
    let signed = match certs.iter().find(|(id, _)| id.0 == key) {
        Some((_, der)) => crate::auth::verify(der, message, signature).is_ok(),
        None if insecure => Signer::insecure().signed(message, signature),
        None => {
            return Err(
                "signed with a key whose certificate was not given (a renewed one? give it with --city-cert)",
            );
        }
    };
    if signed { Ok(()) } else { Err("its signature is not the city's (forged or altered)") }
}

/// Checks the city's statement `proof` (see [`Receipts::derived`]) that it
/// derived the change whose content hash is `change` from the office
/// request `request`, against the city's certificates `certs` (as
/// [`Receipt::checked`]).
pub fn derived_checked(
    proof: &[u8],
    (request, change): (&[u8; 16], &Hash),
    certs: &[(KeyId, Vec<u8>)],
    insecure: bool,
) -> Result<(), &'static str> {
    let (id, signature) = proof.split_at_checked(32).ok_or("not a statement of the city's")?;
    city_signed(id, &derived_message(request, change), signature, certs, insecure)
}

/// Makes and checks the city's receipts.
#[derive(Clone)]
pub struct Receipts {
    /// The key receipts are made with, then those before it (newest first).
    keys: Arc<RwLock<Vec<Arc<Signer>>>>,
    /// The city database's id.
    city: [u8; 16],
}

impl std::fmt::Debug for Receipts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipts(..)")
    }
}

impl Receipts {
    /// Receipts of the city database `city` signed with the city's key in
    /// `files`, or (no TLS: `insecure_dev`) a fixed one.
    pub fn new(files: Option<&TlsFiles>, city: [u8; 16]) -> anyhow::Result<Receipts> {
        let key = match files {
            Some(files) => Signer::load(files)?,
            None => Signer::insecure(),
        };
        Ok(Receipts { keys: Arc::new(RwLock::new(vec![Arc::new(key)])), city })
    }

    /// Makes receipts from now on with the key in `files` (renewed and
    /// reloaded), still checking those made with the keys before.
    pub fn reload(&self, files: &TlsFiles) -> anyhow::Result<()> {
        let key = Signer::load(files)?;
        let mut keys = self.keys.write().expect("poisoned");
        if keys[0].key_id() != key.key_id() {
            keys.retain(|k| k.key_id() != key.key_id());
            keys.insert(0, Arc::new(key));
            keys.truncate(KEYS_KEPT);
        }
        Ok(())
    }

    /// The city's statement that the change whose content hash is `change`
    /// (as logged: its stamp, context and values) is one it derived from
    /// the office request `request`: its key id, then its signature.
    pub fn derived(&self, request: &[u8; 16], change: &Hash) -> Vec<u8> {
        let key = self.keys.read().expect("poisoned")[0].clone();
        let mut proof = key.key_id().0.to_vec();
        proof.extend_from_slice(&key.sign(&derived_message(request, change)));
        proof
    }

    /// True if `proof` is the city's statement (with any of its keys) that
    /// it derived the change `change` from the request `request`.
    pub fn proves_derived(&self, request: &[u8; 16], change: &Hash, proof: &[u8]) -> bool {
        let Some((id, signature)) = proof.split_at_checked(32) else { return false };
        let keys = self.keys.read().expect("poisoned");
        keys.iter().any(|k| k.key_id().0 == id && k.signed(&derived_message(request, change), signature))
    }

    /// The receipts for `ward` in loss generation `generation`, whose ack
    /// receipts speak for sequences from `from`.
    pub fn for_ward(&self, ward: &WardCode, generation: i64, from: u64) -> WardReceipts {
        WardReceipts { receipts: self.clone(), ward: ward.clone(), generation, from }
    }
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

impl WardReceipts {
    /// The ward's loss generation: when the city last recorded a loss of
    /// the ward's (0: never).
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The receipt for "the city applied the ward's changes up to `seq`,
    /// whose link is `link`", with the log's checkpoint `head`.
    pub fn ack(&self, seq: u64, link: Option<Hash>, head: (u64, Hash)) -> Vec<u8> {
        self.sign(Said::Ack { seq, link: link.unwrap_or_default() }, head)
    }

    /// If `receipt` is the city's for the ward's changes up to `seq`, made
    /// in this loss generation or a later one, the first sequence it
    /// speaks for.
    pub fn proves_ack(&self, seq: u64, receipt: &[u8]) -> Option<u64> {
        self.verify(receipt, |said| matches!(said, Said::Ack { seq: s, .. } if s == seq))
    }

    /// The receipt for "the city's log held the change checked `check` at
    /// `cursor`", with the log's checkpoint `head`.
    pub fn downstream(&self, cursor: u64, check: u64, head: (u64, Hash)) -> Vec<u8> {
        self.sign(Said::Downstream { cursor, check }, head)
    }

    /// True if `receipt` is the city's for the change checked `check` at
    /// `cursor`, handed to the ward in this loss generation or a later one.
    pub fn proves_downstream(&self, cursor: u64, check: u64, receipt: &[u8]) -> bool {
        self.verify(receipt, |said| said == Said::Downstream { cursor, check }).is_some()
    }

    fn sign(&self, said: Said, head: (u64, Hash)) -> Vec<u8> {
        let key = self.receipts.keys.read().expect("poisoned")[0].clone();
        let receipt = Receipt {
            city: self.receipts.city,
            key: key.key_id(),
            ward: self.ward.clone(),
            said,
            head,
            generation: self.generation,
            from: self.from,
            at_ms: crate::clock::now_ms(),
        };
        let mut bytes = receipt.signed_message();
        let signature = key.sign(&bytes);
        bytes.extend_from_slice(&signature);
        bytes
    }

    fn verify(&self, bytes: &[u8], says: impl Fn(Said) -> bool) -> Option<u64> {
        let (r, signature) = Receipt::parse(bytes)?;
        // (Not its database id: a city put back to a copy from before it
        // had one, or to none, still takes the receipts its key made.)
        if r.ward != self.ward || !says(r.said) || r.generation < self.generation {
            return None;
        }
        let keys = self.receipts.keys.read().expect("poisoned");
        let key = keys.iter().find(|k| k.key_id() == r.key)?;
        key.signed(&r.signed_message(), signature).then_some(r.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ward(code: &str) -> WardCode {
        WardCode::parse(code).unwrap()
    }

    const CITY: [u8; 16] = [3; 16];
    const HEAD: (u64, Hash) = (3_410, [5; 32]);

    /// The city's TLS files of a new dev CA in `dir` (its key: `city.key`).
    fn city_files(dir: &std::path::Path) -> TlsFiles {
        let files = TlsFiles::in_dir(dir, "city");
        if !files.key.exists() {
            crate::auth::DevCa::open_or_create(dir).unwrap().issue_city().unwrap();
        }
        files
    }

    #[test]
    fn a_receipt_proves_only_what_it_was_made_for_and_anyone_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let city = Receipts::new(Some(&city_files(dir.path())), CITY).unwrap();
        let (w, other) = (city.for_ward(&ward("00082"), 0, 1), city.for_ward(&ward("00145"), 0, 1));
        let ack = w.ack(120, Some([7; 32]), HEAD);
        assert_eq!(w.proves_ack(120, &ack), Some(1));
        assert_eq!(w.proves_ack(121, &ack), None, "another sequence");
        assert_eq!(other.proves_ack(120, &ack), None, "another ward");
        assert_eq!(w.proves_ack(120, &[]), None, "no receipt");
        assert_eq!(w.proves_ack(120, &ack[..32]), None, "a cut receipt");
        let down = w.downstream(3_407, 0x51f0, HEAD);
        assert!(w.proves_downstream(3_407, 0x51f0, &down));
        assert!(!w.proves_downstream(3_408, 0x51f0, &down), "another cursor");
        assert!(!w.proves_downstream(3_407, 0x51f1, &down), "another change");
        assert!(!other.proves_downstream(3_407, 0x51f0, &down), "another ward");
        // A receipt of one kind never passes for the other.
        assert!(!w.proves_downstream(120, 0, &ack));
        // What it says can be read by anyone, and checked with the city's certificate.
        let (read, signature) = Receipt::parse(&ack).unwrap();
        assert_eq!((read.city, read.ward.as_str(), read.head), (CITY, "00082", HEAD));
        assert_eq!(read.said, Said::Ack { seq: 120, link: [7; 32] });
        let pem = std::fs::read(dir.path().join("city.pem")).unwrap();
        let der = x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents;
        assert_eq!(read.key, crate::auth::key_id(&der).unwrap());
        assert_eq!(crate::auth::verify(&der, &read.signed_message(), signature), Ok(()));
        let certs = [(read.key, der.clone())];
        assert_eq!(
            Receipt::checked(&ack, &certs, false),
            Ok(read.clone()),
            "checked with the city's certificate"
        );
        let mut altered = ack.clone();
        altered[100] ^= 1;
        assert_eq!(
            Receipt::checked(&altered, &certs, false),
            Err("its signature is not the city's (forged or altered)")
        );
        assert!(Receipt::checked(&ack, &[], false).unwrap_err().contains("--city-cert"), "a key not given");
        assert!(Receipt::checked(&ack, &[], true).is_err(), "not the fixed key of a city without TLS");
        // No byte of it can be changed.
        for at in [30, 60, 100, 150, ack.len() - 70, ack.len() - 1] {
            let mut bent = ack.clone();
            bent[at] ^= 1;
            assert_eq!(w.proves_ack(120, &bent), None, "byte {at} changed");
        }
        // A city put back to none of its data (another database id) still
        // takes the receipts its key made.
        let emptied = Receipts::new(Some(&city_files(dir.path())), [4; 16]).unwrap();
        assert_eq!(emptied.for_ward(&ward("00082"), 0, 1).proves_ack(120, &ack), Some(1));
        // Nor does it prove anything once a loss was recorded after it was
        // made; a city put back to before its generation takes it.
        let later = city.for_ward(&ward("00082"), 1_780_000_000_000, 1);
        assert!(later.proves_ack(120, &ack).is_none() && !later.proves_downstream(3_407, 0x51f0, &down));
        let made_later = later.ack(120, None, HEAD);
        assert_eq!(w.proves_ack(120, &made_later), Some(1));
        // Ack receipts speak for sequences from the one they were made for.
        let from = city.for_ward(&ward("00082"), 0, 111).ack(120, None, HEAD);
        assert_eq!(Receipt::parse(&from).unwrap().0.from, 111);
        // A city process started again (or another one) with the city's key
        // checks them; only the city's key makes them.
        let again =
            Receipts::new(Some(&city_files(dir.path())), CITY).unwrap().for_ward(&ward("00082"), 0, 1);
        assert_eq!(again.proves_ack(120, &ack), Some(1));
        let other_dir = tempfile::tempdir().unwrap();
        let forger =
            Receipts::new(Some(&city_files(other_dir.path())), CITY).unwrap().for_ward(&ward("00082"), 0, 1);
        assert!(w.proves_ack(120, &forger.ack(120, None, HEAD)).is_none());
        assert!(forger.proves_ack(120, &ack).is_none());
    }

    #[test]
    fn a_renewed_key_makes_receipts_and_the_one_before_still_checks_its_own() {
        let (dir, renewed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let city = Receipts::new(Some(&city_files(dir.path())), CITY).unwrap();
        let old = city.for_ward(&ward("00082"), 0, 1).ack(7, None, HEAD);
        city.reload(&city_files(renewed.path())).unwrap();
        let w = city.for_ward(&ward("00082"), 0, 1);
        assert!(w.proves_ack(7, &old).is_some(), "a receipt made before the renewal");
        let new = w.ack(7, None, HEAD);
        assert_ne!(
            Receipt::parse(&new).unwrap().0.key,
            Receipt::parse(&old).unwrap().0.key,
            "the renewed key"
        );
        let fresh =
            Receipts::new(Some(&city_files(renewed.path())), CITY).unwrap().for_ward(&ward("00082"), 0, 1);
        assert!(fresh.proves_ack(7, &new).is_some());
        // Reloading the same key again keeps the one before.
        city.reload(&city_files(renewed.path())).unwrap();
        assert!(city.for_ward(&ward("00082"), 0, 1).proves_ack(7, &old).is_some());
    }
}
