//! What the fuzz targets (`protocol/fuzz`), the proptests and the kept crash inputs
//! (`protocol/fuzz/regressions/`) feed bytes to: every decoder that untrusted bytes reach. Each
//! function must return for any input, without panicking, and allocate no more than the bounds
//! allow; the fuzzers (libFuzzer with AddressSanitizer) and `tests/fuzz.rs` check that.

use bytes::BytesMut;

use crate::codec::decode;
use crate::frame;
use crate::types::*;

/// Largest body the fuzzed frame decoders accept (the servers' bound is larger; the logic is
/// the same).
const MAX_BODY: usize = 1 << 20;

/// Decodes `data` as the args of every request a server takes, and as the result of every
/// answer a client reads.
pub fn thrift(data: &[u8]) {
    macro_rules! each {
        ($wrap:ident: $($t:ty),* $(,)?) => { $( let _ = decode::<$wrap<$t>>(data); )* };
    }
    each!(Args: UpdateRequest, MultiPutRequest, MultiRemoveRequest, IncrRequest,
        CheckAndSetRequest, CheckAndMutateRequest, Blob, MultiGetRequest, BatchGetRequest,
        GetScannerRequest, ScanRequest, i64, PrepareRequest, LearnAddRequest, LearnRequest,
        LearnFetchRequest, LearnDoneRequest, Assignment, QueryCfgRequest, BeaconRequest,
        UpdateConfigRequest, CreateAppRequest, DropAppRequest, RecallAppRequest,
        ListAppsRequest, ListNodesRequest, ClusterInfoRequest, UpdateAppEnvRequest,
        MetaControlRequest, QueryManualCompactRequest, AvailabilityReport);
    each!(Reply: UpdateResponse, ReadResponse, TtlResponse, CountResponse, MultiRemoveResponse,
        MultiGetResponse, BatchGetResponse, IncrResponse, CheckAndSetResponse,
        CheckAndMutateResponse, ScanResponse, QueryCfgResponse, BeaconResponse, PrepareResponse,
        LearnResponse, LearnFetchResponse, UpdateConfigResponse, CreateAppResponse,
        DropAppResponse, RecallAppResponse, ListAppsResponse, UpdateAppEnvResponse,
        ListNodesResponse, ClusterInfoResponse, QueryManualCompactResponse,
        MetaControlResponse, AvailabilityReportResponse);
}

/// Reads `data` as a stream of request frames (as a server does), decoding each one's args as
/// every type; then as a stream of response frames (as a client does).
pub fn frames(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(r)) = frame::decode_request(&mut buf, MAX_BODY) {
        thrift(&r.args);
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(r)) = frame::decode_response(&mut buf, MAX_BODY) {
        thrift(&r.result);
    }
}

/// A valid v0 header around `body`: the fuzzer's bytes reach the envelope and args decoders
/// instead of stopping at the magic.
pub fn framed_body(body: &[u8]) {
    let mut bytes = Vec::with_capacity(frame::HEADER_V0_LEN + body.len());
    bytes.extend_from_slice(b"THFT");
    for word in [0, frame::HEADER_V0_LEN as u32, 0, body.len() as u32] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.resize(frame::HEADER_V0_LEN, 0);
    bytes.extend_from_slice(body);
    frames(&bytes);
}
