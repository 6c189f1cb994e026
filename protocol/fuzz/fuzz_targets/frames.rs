//! Any bytes through the request and response decoders, and the args of every RPC.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pegasus_protocol::frame;
use pegasus_protocol::types::*;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(r)) = frame::decode_request(&mut buf, 1 << 16) {
        let _ = r.args::<UpdateRequest>();
        let _ = r.args::<MultiGetRequest>();
        let _ = r.args::<GetScannerRequest>();
        let _ = r.args::<CheckAndMutateRequest>();
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(r)) = frame::decode_response(&mut buf, 1 << 16) {
        let _ = r.result::<QueryCfgResponse>();
    }
});
