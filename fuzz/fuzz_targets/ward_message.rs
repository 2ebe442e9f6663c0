#![no_main]
//! Fuzz target: arbitrary bytes as a ward message reaching the city. See wardsync::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wardsync::fuzzing::ward_message(data));
