#![no_main]
//! Fuzz target: arbitrary bytes as a record reaching the city. See wardsync::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wardsync::fuzzing::record(data));
