//! Arbitrary bytes never panic the frame decoders, and never make them claim more than the
//! limit allows.

use bytes::BytesMut;
use pegasus_protocol::frame;
use pegasus_protocol::types::{Args, MultiGetRequest, ScanResponse};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn request_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(request)) = frame::decode_request(&mut buf, 1024) {
            let _ = request.args::<MultiGetRequest>();
        }
    }

    /// A valid header with a random body: the body decoders fail cleanly.
    #[test]
    fn random_bodies_under_a_valid_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = b"THFT\0\0\0\0\0\0\0\x30".to_vec();
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0; 28]);
        bytes.extend_from_slice(&body);
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(Some(request)) = frame::decode_request(&mut buf, 1 << 20) {
            let _ = request.args::<MultiGetRequest>();
            let _ = pegasus_protocol::codec::decode::<Args<ScanResponse>>(&request.args);
        }
    }

    #[test]
    fn response_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(response)) = frame::decode_response(&mut buf, 1024) {
            let _ = response.result::<ScanResponse>();
        }
    }
}
