//! Arbitrary bytes never panic the decoders, and never make them claim more than the limits
//! allow: the proptest side of the fuzz targets (same functions, `pegasus_protocol::fuzzing`).
//! `PEGASUS_FUZZ_CASES` sets the case count (`tests/fuzz.sh` runs many where no fuzzer is).

use pegasus_protocol::frame::{RequestMeta, encode_request_v0};
use pegasus_protocol::fuzzing;
use pegasus_protocol::types::{Blob, CreateAppOptions, CreateAppRequest, UpdateRequest};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PEGASUS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

/// Well-formed requests to start mutating from.
fn valid_frames() -> Vec<Vec<u8>> {
    let meta = RequestMeta::default();
    let put = UpdateRequest {
        key: Blob(b"\x00\x01hs".to_vec().into()),
        value: Blob(b"v".to_vec().into()),
        expire_ts_seconds: 0,
    };
    let create = CreateAppRequest {
        app_name: "t".into(),
        options: CreateAppOptions {
            partition_count: 8,
            replica_count: 3,
            envs: [("k".to_owned(), "v".to_owned())].into(),
            ..CreateAppOptions::default()
        },
    };
    vec![
        encode_request_v0(&meta, "RPC_RRDB_RRDB_PUT", 1, &put).unwrap(),
        encode_request_v0(&meta, "RPC_CM_CREATE_APP", 2, &create).unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn any_bytes_as_frames(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::frames(&bytes);
    }

    /// A valid header with a random body: the envelope and body decoders fail cleanly.
    #[test]
    fn any_body_under_a_valid_header(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::framed_body(&body);
        fuzzing::thrift(&body);
    }

    /// Valid requests with a few bytes changed: lengths, types and counts that lie.
    #[test]
    fn valid_requests_with_bytes_changed(
        which in 0usize..2,
        changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut frame = valid_frames().swap_remove(which);
        for (at, byte) in changes {
            let at = at % frame.len();
            frame[at] = byte;
        }
        fuzzing::frames(&frame);
    }
}
