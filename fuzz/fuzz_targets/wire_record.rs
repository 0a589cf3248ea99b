//! The wire format of records (what a `process` replica reads from Kafka): bytes → `wire::decode`. Checks: a
//! refusal has a message; a decoded record encodes to bytes that decode to the same record, and encode again to
//! the same bytes (the format is a fixed point after one round).

#![no_main]

use kelemetry_core::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let record = match wire::decode(data) {
        Ok(record) => record,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let bytes = wire::encode(&record);
    let again = wire::decode(&bytes).expect("an encoded record decodes");
    assert_eq!(again, record, "a round trip keeps the record");
    assert_eq!(wire::encode(&again), bytes, "encoding is stable");
    assert_eq!(
        wire::message_key(&again),
        again.object().key().to_string(),
        "the message key is the object key"
    );
});
