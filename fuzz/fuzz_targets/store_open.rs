//! The state store as a restarted server reads it, on arbitrary bytes: the input is written
//! over the start of a fresh store (header, table directory, records, indexes), which is then
//! opened, and every record, index and journal entry read
//! (`fuse_recovery::store::untrusted::open_and_read_all`). It must never panic or hang.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuse_recovery::store::untrusted::open_and_read_all(data);
});
