#![no_main]
//! Fuzz target: arbitrary bytes as a change reaching the city. See wardsync::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wardsync::fuzzing::change(data));
