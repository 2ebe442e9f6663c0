//! The ward's side of the chain ([`crate::model::signed`]): each batch sent
//! carries the link before its first change, each change's content hash,
//! and the ward's signature of its last link, made with the key of the
//! certificate it connects with.

use std::sync::Arc;

use crate::auth::Signer;
use crate::model::signed::{self, Hash, KeyId};
use crate::model::{Change, WardCode};
use crate::proto::pb;

/// Chains and signs one session's batches, from where the city's chain
/// stands.
#[derive(Debug)]
pub struct Chainer {
    ward: WardCode,
    signer: Option<Arc<Signer>>,
    /// The last sequence chained, and its link.
    head: (u64, Hash),
}

impl Chainer {
    /// Chains `ward`'s batches after `head` (a sequence and its link),
    /// signed by `signer` (`None`: unsigned, `insecure_dev` only).
    pub fn new(ward: WardCode, signer: Option<Arc<Signer>>, head: (u64, Hash)) -> Chainer {
        Chainer { ward, signer, head }
    }

    /// The key id content hashes name: the signer's, or all zero.
    pub fn key(&self) -> KeyId {
        self.signer.as_ref().map(|s| s.key_id()).unwrap_or_default()
    }

    /// The last sequence chained, and its link.
    pub fn head(&self) -> (u64, Hash) {
        self.head
    }

    /// `changes` (numbered on from the head, in order) as a batch: chained
    /// and signed. The head moves to its last change.
    pub fn batch(&mut self, changes: &[Change]) -> pb::Batch {
        let key = self.key();
        let hashes: Vec<Hash> = changes.iter().map(|c| signed::content_hash(c, &key)).collect();
        let first = changes.first().map_or(self.head.0 + 1, |c| c.seq);
        let previous = self.head.1;
        let links = signed::links(&self.ward, first, &previous, &hashes);
        let signature = match (&self.signer, links.last()) {
            (Some(s), Some(last)) => s.sign(&signed::batch_message(last)),
            _ => Vec::new(),
        };
        if let Some(last) = links.last() {
            self.head = (first + links.len() as u64 - 1, *last);
        }
        // A change to another ward's record is signed on its own too.
        let sign_apart = |(c, h): (&Change, &Hash)| {
            let mut wire: pb::Change = c.into();
            if let Some(s) = self.signer.as_ref().filter(|_| signed::signs_apart(&self.ward, c)) {
                wire.signature = s.sign(&signed::authored_message(h));
            }
            wire
        };
        pb::Batch {
            changes: changes.iter().zip(&hashes).map(sign_apart).collect(),
            previous: previous.to_vec(),
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            signature,
        }
    }
}
