//! Any bytes as the body of a well-formed frame: the Thrift envelope, then every args and
//! result type.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pegasus_protocol::fuzzing::framed_body(data);
    pegasus_protocol::fuzzing::thrift(data);
});
