//! Replays the fuzz corpus (`fuzz/corpus/TARGET/*`) through the same entry
//! points the fuzz targets use, and throws arbitrary bytes at them: hostile
//! or malformed input must be refused, never crash the city.

use std::path::Path;

use proptest::prelude::*;
use wardsync::fuzzing;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        run(&bytes);
        // Truncated and bit-flipped variants are malformed input too.
        for cut in [0, 1, bytes.len() / 2] {
            run(&bytes[..cut.min(bytes.len())]);
        }
        let mut flipped = bytes.clone();
        for b in flipped.iter_mut().step_by(7) {
            *b ^= 0x5a;
        }
        run(&flipped);
        n += 1;
    }
    n
}

#[test]
fn the_fuzz_corpus_replays_without_a_crash() {
    assert!(replay("ward_message", fuzzing::ward_message) >= 2);
    assert!(replay("change", fuzzing::change) >= 10);
    assert!(replay("record", fuzzing::record) >= 10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn arbitrary_bytes_never_crash_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::ward_message(&bytes);
        fuzzing::change(&bytes);
        fuzzing::record(&bytes);
    }
}
