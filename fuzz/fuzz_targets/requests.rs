//! Arbitrary bytes as every operator request (and as a page token) through
//! validation: it must answer, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    connector_control::api::fuzzing::requests(data);
});
