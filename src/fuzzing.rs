//! Entry points for the fuzz targets in `fuzz/` and for the test that
//! replays their corpus: each takes arbitrary bytes, as they could arrive
//! from the network or a file, and must never panic.

use prost::Message;

use crate::model::{Context, Versioned};
use crate::proto::{change_from_pb, pb, valid_record_from_pb};

fn context() -> Context {
    Context {
        today: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid"),
        province: Some("01".into()),
    }
}

/// A replication message from a ward, decoded and every change taken in
/// as the city would (decoded, merged into a fresh state, validated).
pub fn ward_message(bytes: &[u8]) {
    let Ok(m) = pb::WardMessage::decode(bytes) else { return };
    if let Some(pb::ward_message::Msg::Batch(b)) = m.msg {
        for c in &b.changes {
            change(&c.encode_to_vec());
        }
        // Its chain checked as on arrival (no certificate: nothing signed).
        let ward = crate::model::WardCode::parse("00082").expect("valid");
        let _ =
            crate::city::arrival::check((&ward, &std::sync::Arc::from(&[][..]), Default::default()), b, 1000);
    }
}

/// One change: decoded, its refusal decided, merged into a record state.
pub fn change(bytes: &[u8]) {
    let Ok(c) = pb::Change::decode(bytes) else { return };
    let Ok(change) = change_from_pb(c) else { return };
    let ward = crate::model::WardCode::parse("00082").expect("valid");
    let standing =
        crate::model::Standing { state: None, named_sender: false, today_by_sender: 0, spouse: None };
    let _ = change.refusal(&ward, &standing, &context());
    let mut state = Versioned::default();
    state.apply(&change.values(), &change.stamp, &change.context);
    let _ = state.materialize(&change.key, &Default::default());
    let _ = state.conflicts(change.key.kind(), &Default::default());
}

/// One record, from protobuf and from JSON, fully validated.
pub fn record(bytes: &[u8]) {
    if let Ok(r) = pb::Record::decode(bytes) {
        let _ = valid_record_from_pb(Some(r), &context());
    }
    if let Ok(r) = serde_json::from_slice::<crate::model::Record>(bytes) {
        let _ = r.validate(&context());
    }
}
