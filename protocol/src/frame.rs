//! Framing: the THFT request header (v0 and v1), the Thrift message envelope, and the response
//! frame.
//!
//! Request, v0 (what pypegasus3 and the Go client send), 48 bytes then the body:
//!
//! ```text
//! "THFT" | u32 version=0 | u32 header_length=48 | u32 hdr_crc32 | u32 body_length | u32 body_crc32
//!        | i32 app_id | i32 partition_index | i32 client_timeout | i32 thread_hash | u64 partition_hash
//! ```
//!
//! Request, v1 (the Java client): `"THFT" | u32 version=1 | u32 meta_length | u32 body_length`,
//! then a Thrift `thrift_request_meta_v1` struct and the body.
//!
//! The body is a Thrift message: `message_begin(name, CALL, seqid)`, the args struct.
//!
//! Response: `i32 total_length` (counting itself) | Thrift string error name | `message_begin(
//! name + "_ACK", REPLY, seqid)` | the result struct (only when the error is `ERR_OK`).
//!
//! A CRC field that is not zero is checked (CRC-32C; header CRC over the 48 bytes with the CRC
//! field zeroed). Every length is bounded: a frame that claims more than the configured maximum
//! is an error, never an allocation.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::ProtocolError;
use super::codec::{self, Field};
use crate::thrift_struct;

/// Length of the v0 header.
pub const HEADER_V0_LEN: usize = 48;
/// Length of the fixed part of the v1 header.
pub const HEADER_V1_LEN: usize = 16;
/// Largest v1 meta struct accepted.
const MAX_META_V1_LEN: usize = 1024;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Thrift message types.
pub mod message_type {
    /// A request.
    pub const CALL: u8 = 1;
    /// An answer.
    pub const REPLY: u8 = 2;
    /// An exception.
    pub const EXCEPTION: u8 = 3;
    /// A request with no answer.
    pub const ONEWAY: u8 = 4;
}

/// Why a frame was refused. The connection it came on cannot be trusted after any of these.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not `THFT`.
    #[error("not a THFT frame (starts with {0:02x?})")]
    BadMagic([u8; 4]),
    /// A header version other than 0 and 1.
    #[error("unsupported THFT header version {0}")]
    BadVersion(u32),
    /// A v0 header whose length field is not 48.
    #[error("THFT v0 header length is {0}, not 48")]
    BadHeaderLength(u32),
    /// A frame longer than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Claimed length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header CRC does not match.
    #[error("header CRC mismatch")]
    HeaderCrc,
    /// The body CRC does not match.
    #[error("body CRC mismatch")]
    BodyCrc,
    /// The v1 meta or the message envelope cannot be read.
    #[error("bad frame: {0}")]
    Protocol(#[from] ProtocolError),
}

thrift_struct! {
    /// The v1 request meta (`thrift_request_meta_v1`).
    pub struct RequestMetaV1 {
        1: app_id: i32,
        2: partition_index: i32,
        3: client_timeout: i32,
        4: client_partition_hash: i64,
        5: is_backup_request: bool,
    }
}

/// What the request header says about a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// Header version it came with (0 or 1).
    pub version: u32,
    /// The table.
    pub app_id: i32,
    /// The partition.
    pub partition_index: i32,
    /// The client's timeout in milliseconds (0: none given).
    pub client_timeout_ms: i32,
    /// The partition hash the client computed (0: not given).
    pub partition_hash: u64,
    /// A read that a secondary may serve.
    pub is_backup_request: bool,
}

/// The Thrift message envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageBegin {
    /// The RPC name.
    pub name: String,
    /// One of [`message_type`].
    pub kind: u8,
    /// The sequence id, echoed in the answer.
    pub seqid: i32,
}

/// One request: its header and its Thrift message.
#[derive(Clone, Debug)]
pub struct Request {
    /// From the header.
    pub meta: RequestMeta,
    /// The envelope.
    pub message: MessageBegin,
    /// The args struct (after the envelope).
    pub args: Bytes,
}

impl Request {
    /// Decodes the args struct.
    pub fn args<T: Field + Default>(&self) -> Result<T, ProtocolError> {
        codec::decode::<super::types::Args<T>>(&self.args).map(|a| a.0)
    }
}

/// One response.
#[derive(Clone, Debug)]
pub struct Response {
    /// The rDSN error name (`ERR_OK` when the result follows).
    pub error: String,
    /// The envelope.
    pub message: MessageBegin,
    /// The result struct (empty unless `error` is `ERR_OK`).
    pub result: Bytes,
}

impl Response {
    /// Decodes the result struct.
    pub fn result<T: Field + Default>(&self) -> Result<T, ProtocolError> {
        codec::decode::<super::types::Reply<T>>(&self.result).map(|r| r.0)
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Takes one request from the front of `buf`. `Ok(None)`: more bytes are needed (nothing is
/// consumed). `max_body` bounds the body (and so the memory one request can take).
pub fn decode_request(buf: &mut BytesMut, max_body: usize) -> Result<Option<Request>, FrameError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    if &buf[..4] != b"THFT" {
        return Err(FrameError::BadMagic([buf[0], buf[1], buf[2], buf[3]]));
    }
    let (meta, header_len, body_len) = match read_u32(buf, 4) {
        0 => {
            if buf.len() < HEADER_V0_LEN {
                return Ok(None);
            }
            let header_length = read_u32(buf, 8);
            if header_length as usize != HEADER_V0_LEN {
                return Err(FrameError::BadHeaderLength(header_length));
            }
            let body_len = read_u32(buf, 16) as usize;
            check_len(body_len, max_body)?;
            let hdr_crc = read_u32(buf, 12);
            if hdr_crc != 0 {
                let mut header = [0u8; HEADER_V0_LEN];
                header.copy_from_slice(&buf[..HEADER_V0_LEN]);
                header[12..16].fill(0);
                if CRC32C.checksum(&header) != hdr_crc {
                    return Err(FrameError::HeaderCrc);
                }
            }
            if buf.len() < HEADER_V0_LEN + body_len {
                // Room for the rest (its size is checked): the next read can take all of it.
                buf.reserve(HEADER_V0_LEN + body_len - buf.len());
                return Ok(None);
            }
            let body_crc = read_u32(buf, 20);
            if body_crc != 0
                && CRC32C.checksum(&buf[HEADER_V0_LEN..HEADER_V0_LEN + body_len]) != body_crc
            {
                return Err(FrameError::BodyCrc);
            }
            let meta = RequestMeta {
                version: 0,
                app_id: read_u32(buf, 24) as i32,
                partition_index: read_u32(buf, 28) as i32,
                client_timeout_ms: read_u32(buf, 32) as i32,
                partition_hash: u64::from_be_bytes(buf[40..48].try_into().expect("8 bytes")),
                is_backup_request: false,
            };
            (meta, HEADER_V0_LEN, body_len)
        }
        1 => {
            if buf.len() < HEADER_V1_LEN {
                return Ok(None);
            }
            let meta_len = read_u32(buf, 8) as usize;
            let body_len = read_u32(buf, 12) as usize;
            if meta_len > MAX_META_V1_LEN {
                return Err(FrameError::TooLarge {
                    len: meta_len,
                    max: MAX_META_V1_LEN,
                });
            }
            check_len(body_len, max_body)?;
            if buf.len() < HEADER_V1_LEN + meta_len + body_len {
                buf.reserve(HEADER_V1_LEN + meta_len + body_len - buf.len());
                return Ok(None);
            }
            let v1: RequestMetaV1 = codec::decode(&buf[HEADER_V1_LEN..HEADER_V1_LEN + meta_len])?;
            let meta = RequestMeta {
                version: 1,
                app_id: v1.app_id,
                partition_index: v1.partition_index,
                client_timeout_ms: v1.client_timeout,
                partition_hash: v1.client_partition_hash as u64,
                is_backup_request: v1.is_backup_request,
            };
            (meta, HEADER_V1_LEN + meta_len, body_len)
        }
        other => return Err(FrameError::BadVersion(other)),
    };
    buf.advance(header_len);
    let mut body = buf.split_to(body_len).freeze();
    let (message, used) = parse_message_begin(&body)?;
    body.advance(used);
    Ok(Some(Request {
        meta,
        message,
        args: body,
    }))
}

fn check_len(len: usize, max: usize) -> Result<(), FrameError> {
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(())
}

/// Reads a Thrift message envelope, strict (`0x8001` version word) or old style; returns it
/// and the bytes it took.
pub fn parse_message_begin(b: &[u8]) -> Result<(MessageBegin, usize), ProtocolError> {
    let truncated = || ProtocolError::Truncated;
    let get_u32 = |at: usize| {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes")))
    };
    let first = get_u32(0).ok_or_else(truncated)?;
    if first & 0x8000_0000 != 0 {
        if first & 0xFFFF_0000 != 0x8001_0000 {
            return Err(ProtocolError::Bad(format!(
                "bad Thrift version word {first:#x}"
            )));
        }
        let kind = (first & 0xFF) as u8;
        let name_len = get_u32(4).ok_or_else(truncated)? as usize;
        let name = b.get(8..8 + name_len).ok_or_else(truncated)?;
        let seqid = get_u32(8 + name_len).ok_or_else(truncated)? as i32;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| ProtocolError::Bad("RPC name is not UTF-8".into()))?;
        Ok((MessageBegin { name, kind, seqid }, 12 + name_len))
    } else {
        let name_len = first as usize;
        let name = b.get(4..4 + name_len).ok_or_else(truncated)?;
        let kind = *b.get(4 + name_len).ok_or_else(truncated)?;
        let seqid = get_u32(5 + name_len).ok_or_else(truncated)? as i32;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| ProtocolError::Bad("RPC name is not UTF-8".into()))?;
        Ok((MessageBegin { name, kind, seqid }, 9 + name_len))
    }
}

/// Writes a strict Thrift message envelope.
pub fn write_message_begin(out: &mut Vec<u8>, name: &str, kind: u8, seqid: i32) {
    out.put_u32(0x8001_0000 | kind as u32);
    out.put_u32(name.len() as u32);
    out.put_slice(name.as_bytes());
    out.put_i32(seqid);
}

/// Encodes a request with a v0 header (as pypegasus3 and the Go client do).
pub fn encode_request_v0<T: Field>(
    meta: &RequestMeta,
    name: &str,
    seqid: i32,
    args: &T,
) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    append_request_v0(&mut out, meta, name, seqid, args)?;
    Ok(out)
}

/// As [`encode_request_v0`], appending to `out`; on error `out` is left as it was.
pub fn append_request_v0<T: Field>(
    out: &mut Vec<u8>,
    meta: &RequestMeta,
    name: &str,
    seqid: i32,
    args: &T,
) -> Result<(), ProtocolError> {
    let start = out.len();
    out.resize(start + HEADER_V0_LEN, 0);
    write_message_begin(out, name, message_type::CALL, seqid);
    if let Err(e) = codec::encode(args, out) {
        out.truncate(start);
        return Err(e);
    }
    let body_len = (out.len() - start - HEADER_V0_LEN) as u32;
    let thread_hash = meta
        .app_id
        .wrapping_mul(7919)
        .wrapping_add(meta.partition_index);
    let mut h = &mut out[start..start + HEADER_V0_LEN];
    h.put_slice(b"THFT");
    h.put_u32(0);
    h.put_u32(HEADER_V0_LEN as u32);
    h.put_u32(0); // hdr_crc32: not set, as every Pegasus client does
    h.put_u32(body_len);
    h.put_u32(0); // body_crc32
    h.put_i32(meta.app_id);
    h.put_i32(meta.partition_index);
    h.put_i32(meta.client_timeout_ms);
    h.put_i32(thread_hash);
    h.put_u64(meta.partition_hash);
    Ok(())
}

/// Encodes a request with a v1 header (as the Java client does).
pub fn encode_request_v1<T: Field>(
    meta: &RequestMeta,
    name: &str,
    seqid: i32,
    args: &T,
) -> Result<Vec<u8>, ProtocolError> {
    let v1 = RequestMetaV1 {
        app_id: meta.app_id,
        partition_index: meta.partition_index,
        client_timeout: meta.client_timeout_ms,
        client_partition_hash: meta.partition_hash as i64,
        is_backup_request: meta.is_backup_request,
    };
    let mut meta_bytes = Vec::new();
    codec::encode(&v1, &mut meta_bytes)?;
    let mut body = Vec::new();
    write_message_begin(&mut body, name, message_type::CALL, seqid);
    codec::encode(args, &mut body)?;
    let mut out = Vec::with_capacity(HEADER_V1_LEN + meta_bytes.len() + body.len());
    out.put_slice(b"THFT");
    out.put_u32(1);
    out.put_u32(meta_bytes.len() as u32);
    out.put_u32(body.len() as u32);
    out.extend_from_slice(&meta_bytes);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Encodes a response into `out`. The result struct is written only for `ERR_OK`.
pub fn encode_response<T: Field>(
    out: &mut Vec<u8>,
    error: &str,
    name_ack: &str,
    seqid: i32,
    result: Option<&T>,
) -> Result<(), ProtocolError> {
    let start = out.len();
    out.put_u32(0); // total length, filled below
    out.put_u32(error.len() as u32);
    out.put_slice(error.as_bytes());
    write_message_begin(out, name_ack, message_type::REPLY, seqid);
    if let Some(result) = result.filter(|_| error == "ERR_OK") {
        codec::encode_reply(result, out)?;
    }
    let total = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&total.to_be_bytes());
    Ok(())
}

/// Takes one response from the front of `buf`; `Ok(None)` if more bytes are needed.
pub fn decode_response(buf: &mut BytesMut, max_len: usize) -> Result<Option<Response>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = read_u32(buf, 0) as usize;
    if total > max_len {
        return Err(FrameError::TooLarge {
            len: total,
            max: max_len,
        });
    }
    if total < 8 {
        return Err(FrameError::Protocol(ProtocolError::Bad(format!(
            "response length {total} is too short"
        ))));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(4);
    let err_len = read_u32(&frame, 0) as usize;
    let error = frame.get(4..4 + err_len).ok_or(ProtocolError::Truncated)?;
    let error = String::from_utf8(error.to_vec())
        .map_err(|_| ProtocolError::Bad("error name is not UTF-8".into()))?;
    frame.advance(4 + err_len);
    let (message, used) = parse_message_begin(&frame)?;
    frame.advance(used);
    Ok(Some(Response {
        error,
        message,
        result: frame,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Args, Blob, UpdateRequest, UpdateResponse};

    fn meta() -> RequestMeta {
        RequestMeta {
            version: 0,
            app_id: 2,
            partition_index: 5,
            client_timeout_ms: 1000,
            partition_hash: 77,
            is_backup_request: false,
        }
    }

    #[test]
    fn v0_and_v1_requests_decode_to_the_same_request() {
        let args = Args(UpdateRequest {
            key: Blob::from(&b"\x00\x01ab"[..]),
            value: Blob::from(&b"v"[..]),
            expire_ts_seconds: 9,
        });
        for (version, bytes) in [
            (
                0,
                encode_request_v0(&meta(), "RPC_RRDB_RRDB_PUT", 7, &args).unwrap(),
            ),
            (
                1,
                encode_request_v1(&meta(), "RPC_RRDB_RRDB_PUT", 7, &args).unwrap(),
            ),
        ] {
            let mut buf = BytesMut::from(&bytes[..]);
            // Every prefix is "need more", never an error.
            for cut in 0..bytes.len() {
                let mut part = BytesMut::from(&bytes[..cut]);
                assert!(
                    decode_request(&mut part, 1 << 20).unwrap().is_none(),
                    "v{version} cut {cut}"
                );
            }
            let req = decode_request(&mut buf, 1 << 20).unwrap().unwrap();
            assert!(buf.is_empty());
            assert_eq!(req.meta, RequestMeta { version, ..meta() });
            assert_eq!(
                req.message,
                MessageBegin {
                    name: "RPC_RRDB_RRDB_PUT".into(),
                    kind: message_type::CALL,
                    seqid: 7
                }
            );
            assert_eq!(req.args::<UpdateRequest>().unwrap(), args.0);
        }
    }

    #[test]
    fn oversized_bad_and_corrupt_frames_are_refused() {
        let args = Args(UpdateRequest::default());
        let good = encode_request_v0(&meta(), "X", 1, &args).unwrap();
        assert!(matches!(
            decode_request(&mut BytesMut::from(&good[..]), 4),
            Err(FrameError::TooLarge { .. })
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode_request(&mut BytesMut::from(&bad[..]), 1 << 20),
            Err(FrameError::BadMagic(_))
        ));
        let mut crc = good.clone();
        crc[20..24].copy_from_slice(&1234u32.to_be_bytes());
        assert!(matches!(
            decode_request(&mut BytesMut::from(&crc[..]), 1 << 20),
            Err(FrameError::BodyCrc)
        ));
        let mut version = good;
        version[7] = 9;
        assert!(matches!(
            decode_request(&mut BytesMut::from(&version[..]), 1 << 20),
            Err(FrameError::BadVersion(9))
        ));
    }

    #[test]
    fn a_set_body_crc_that_matches_is_accepted() {
        let mut bytes =
            encode_request_v0(&meta(), "X", 1, &Args(UpdateRequest::default())).unwrap();
        let crc = CRC32C.checksum(&bytes[HEADER_V0_LEN..]);
        bytes[20..24].copy_from_slice(&crc.to_be_bytes());
        let mut header = [0u8; HEADER_V0_LEN];
        header.copy_from_slice(&bytes[..HEADER_V0_LEN]);
        let hcrc = CRC32C.checksum(&header);
        bytes[12..16].copy_from_slice(&hcrc.to_be_bytes());
        assert!(
            decode_request(&mut BytesMut::from(&bytes[..]), 1 << 20)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn responses_round_trip_and_errors_carry_no_result() {
        let mut out = Vec::new();
        let r = UpdateResponse {
            error: 0,
            app_id: 2,
            partition_index: 5,
            decree: 10,
            server: "s".into(),
        };
        encode_response(&mut out, "ERR_OK", "RPC_RRDB_RRDB_PUT_ACK", 7, Some(&r)).unwrap();
        encode_response::<UpdateResponse>(
            &mut out,
            "ERR_INVALID_STATE",
            "RPC_RRDB_RRDB_PUT_ACK",
            8,
            None,
        )
        .unwrap();
        let mut buf = BytesMut::from(&out[..]);
        let first = decode_response(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!((first.error.as_str(), first.message.seqid), ("ERR_OK", 7));
        assert_eq!(first.result::<UpdateResponse>().unwrap(), r);
        let second = decode_response(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (second.error.as_str(), second.message.seqid),
            ("ERR_INVALID_STATE", 8)
        );
        assert!(second.result.is_empty());
        assert!(buf.is_empty());
    }
}
