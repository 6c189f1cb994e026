//! Any bytes as request frames (as a server reads them) and as response frames (as a client
//! does), every args and result type decoded from each.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pegasus_protocol::fuzzing::frames(data));
