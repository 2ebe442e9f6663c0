//! Writes the seed corpus of the fuzz targets (`fuzz/corpus/TARGET/`):
//! generated records, changes and replication batches, encoded as they
//! travel. Run by `fuzz/run.sh`; the tests replay the corpus.

use std::path::Path;

use prost::Message;
use wardsync::generate::sample;
use wardsync::model::{Change, Hlc, Op, RecordKey, Stamp, WardCode, flatten};
use wardsync::proto::pb;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let ward = WardCode::parse("00082").expect("valid");
    let records = sample(&ward, 12, 3);
    let changes: Vec<Change> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Change {
            seq: i as u64 + 1,
            written_at_ms: 1_700_000_000_000,
            key: RecordKey::new(r.kind(), &r.key_id()).expect("generated keys are valid"),
            stamp: Stamp {
                hlc: Hlc { wall_ms: 1_700_000_000_000, logical: i as u32 },
                writer: "00082".into(),
            },
            context: Default::default(),
            fields: flatten(r).into_keys().collect(),
            op: if i % 5 == 4 { Op::Delete } else { Op::Put(r.clone()) },
        })
        .collect();
    let write = |target: &str, name: String, bytes: Vec<u8>| -> std::io::Result<()> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };
    for (i, r) in records.iter().enumerate() {
        write("record", format!("seed-pb-{i}"), pb::Record::from(r).encode_to_vec())?;
        write("record", format!("seed-json-{i}"), serde_json::to_vec(r).expect("serializes"))?;
    }
    for (i, c) in changes.iter().enumerate() {
        write("change", format!("seed-{i}"), pb::Change::from(c).encode_to_vec())?;
    }
    // Chained as an agent chains it (unsigned: the fuzz target has no certificate).
    let ward = wardsync::model::WardCode::parse("00082").expect("valid");
    let mut chain = wardsync::ward::chain::Chainer::new(ward, None, (0, wardsync::model::signed::GENESIS));
    let batch = pb::WardMessage { msg: Some(pb::ward_message::Msg::Batch(chain.batch(&changes))) };
    write("ward_message", "seed-batch".into(), batch.encode_to_vec())?;
    let hello = pb::WardMessage {
        msg: Some(pb::ward_message::Msg::Hello(pb::Hello {
            ward_code: "00082".into(),
            protocol_version: wardsync::proto::PROTOCOL_VERSION,
            ..Default::default()
        })),
    };
    write("ward_message", "seed-hello".into(), hello.encode_to_vec())?;
    println!("wrote the seed corpus to {}", root.display());
    Ok(())
}
