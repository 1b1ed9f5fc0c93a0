//! Arbitrary bytes as an agent message through the session handler's
//! validation and the state rules: it must answer, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    connector_control::api::fuzzing::agent_message(data);
});
