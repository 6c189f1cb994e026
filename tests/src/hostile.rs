//! Hostile clients, as a port scanner, a fuzzer or a broken client behaves: random bytes, cut and
//! oversized frames, headers whose lengths lie, Thrift of the wrong types, HTTP junk, slowloris
//! and connection churn. Each attack runs on plain blocking sockets against one port and tallies
//! what the server did, for the test to judge.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pegasus_protocol::frame::{self, HEADER_V0_LEN, RequestMeta, encode_request_v0};
use pegasus_protocol::types::{Blob, Gpid, QueryCfgRequest, UpdateRequest};

/// The seeded generator: the same seed, the same attack.
pub use pegasus_replication::sim::Rng;

/// What the server did with one hostile connection.
#[derive(Debug)]
pub struct Seen {
    /// What it sent back.
    pub answer: Vec<u8>,
    /// It closed the connection (end of stream or reset) before we stopped waiting.
    pub closed: bool,
    /// When it did, from when the hostile bytes were sent.
    pub after: Duration,
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_nodelay(true);
    s
}

/// Reads what the server sends until it closes or `within` passes.
fn watch(stream: &mut TcpStream, within: Duration) -> Seen {
    let sent = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        let left = within.saturating_sub(sent.elapsed());
        if left.is_zero() {
            return Seen {
                answer,
                closed: false,
                after: sent.elapsed(),
            };
        }
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset by the server: closed as well.
            Err(_) => break,
        }
    }
    Seen {
        answer,
        closed: true,
        after: sent.elapsed(),
    }
}

/// Sends `bytes` on a new connection (a write the server cut short is fine), optionally
/// half-closes, and watches what comes back.
pub fn send(addr: SocketAddr, bytes: &[u8], half_close: bool, within: Duration) -> Seen {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    watch(&mut s, within)
}

/// Sends each of `payloads` on its own connection, all at once, and watches each.
pub fn send_all(
    addr: SocketAddr,
    payloads: &[Vec<u8>],
    half_close: bool,
    within: Duration,
) -> Vec<Seen> {
    let mut streams: Vec<TcpStream> = payloads
        .iter()
        .map(|p| {
            let mut s = connect(addr);
            let _ = s.write_all(p);
            if half_close {
                let _ = s.shutdown(Shutdown::Write);
            }
            s
        })
        .collect();
    let deadline = Instant::now() + within;
    streams
        .iter_mut()
        .map(|s| watch(s, deadline.saturating_duration_since(Instant::now())))
        .collect()
}

/// A well-formed `put` of `key` to partition 0 of table `app_id`.
pub fn valid_put(app_id: i32, key: &str) -> Vec<u8> {
    let request = UpdateRequest {
        key: Blob(key.as_bytes().to_vec().into()),
        value: Blob(b"hostile".to_vec().into()),
        expire_ts_seconds: 0,
    };
    let meta = RequestMeta {
        app_id,
        ..RequestMeta::default()
    };
    encode_request_v0(&meta, pegasus_protocol::codes::rpc::PUT, 1, &request).expect("encode")
}

/// Random bytes that cannot be taken for HTTP, and bytes that start as a THFT header and then
/// go wrong: `n` payloads.
pub fn random_payloads(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = 1 + rng.below(16 << 10) as usize;
            let mut p = rng.bytes(len);
            if i % 4 == 0 {
                // A THFT magic, then any version, lengths and body.
                p.splice(0..0, *b"THFT");
            } else if p.starts_with(b"GET ") || p.starts_with(b"POST") {
                p[0] = b'X';
            }
            p
        })
        .collect()
}

/// A well-formed frame cut at many points (inside the magic, the header, the body).
pub fn truncated_payloads(frame: &[u8]) -> Vec<Vec<u8>> {
    let mut cuts = vec![1, 3, 4, 7, 8, 12, 20, 47, HEADER_V0_LEN, HEADER_V0_LEN + 1];
    cuts.extend([frame.len() / 2, frame.len() - 1]);
    cuts.into_iter().map(|c| frame[..c].to_vec()).collect()
}

/// Headers that claim more than any server should allocate: a v0 body of 4 GiB and of 1 GiB,
/// a v0 header length that is wrong, a v1 meta of 2 GiB, a v1 body of 4 GiB, an unknown version.
pub fn oversized_payloads() -> Vec<Vec<u8>> {
    let v0 = |body_len: u32, header_len: u32| {
        let mut h = Vec::with_capacity(HEADER_V0_LEN);
        h.extend_from_slice(b"THFT");
        for word in [0, header_len, 0, body_len, 0, 1, 0, 0, 0] {
            h.extend_from_slice(&u32::to_be_bytes(word));
        }
        h.resize(HEADER_V0_LEN, 0);
        h
    };
    let v1 = |meta_len: u32, body_len: u32| {
        let mut h = b"THFT".to_vec();
        for word in [1, meta_len, body_len] {
            h.extend_from_slice(&u32::to_be_bytes(word));
        }
        h
    };
    let mut version = v0(10, 48);
    version[4..8].copy_from_slice(&7u32.to_be_bytes());
    vec![
        v0(u32::MAX, 48),
        v0(1 << 30, 48),
        v0(10, u32::MAX),
        v1(1 << 31, 10),
        v1(16, u32::MAX),
        version,
    ]
}

/// A v0 header claiming a 1,000-byte body with 100 bytes of it sent: the server waits for the rest
/// (until its read timeout), never answers.
pub fn short_body(app_id: i32) -> Vec<u8> {
    let mut frame = valid_put(app_id, "short");
    frame[16..20].copy_from_slice(&1000u32.to_be_bytes());
    frame.truncate(HEADER_V0_LEN + 100.min(frame.len() - HEADER_V0_LEN));
    frame
}

/// Frames whose body is not what the header says: a body length shorter than the body (the rest
/// is read as the next frame), an envelope with a name of 2 GiB, a negative name length, a
/// message type that is not a call, and a bad body CRC.
pub fn lying_payloads(app_id: i32) -> Vec<Vec<u8>> {
    let put = valid_put(app_id, "lying");
    let mut short = put.clone();
    short[16..20].copy_from_slice(&10u32.to_be_bytes());
    let envelope = |name_len: u32| {
        let mut body = vec![0x80, 0x01, 0x00, 0x01];
        body.extend_from_slice(&name_len.to_be_bytes());
        body.extend_from_slice(b"RPC_RRDB_RRDB_PUT");
        let mut frame = put[..HEADER_V0_LEN].to_vec();
        frame[16..20].copy_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    };
    let mut not_a_call = put.clone();
    not_a_call[HEADER_V0_LEN + 3] = 2;
    let mut bad_crc = put.clone();
    bad_crc[20..24].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    vec![
        short,
        envelope(0x7fff_ffff),
        envelope(0xffff_fff0),
        not_a_call,
        bad_crc,
    ]
}

/// For each of `names`, requests whose args are of the wrong Thrift types (a string, a list, a
/// struct of other fields, where the RPC expects its own struct), all pipelined on one
/// connection: `(bytes, how many requests)`.
pub fn mistyped_requests(names: &[&str], app_id: i32) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut n = 0;
    let meta = RequestMeta {
        app_id,
        ..RequestMeta::default()
    };
    let strange_struct = QueryCfgRequest {
        app_name: "\u{0}\u{ffff}".into(),
        partition_indices: vec![i32::MIN, -1, i32::MAX],
    };
    for name in names {
        let mut push = |frame: Result<Vec<u8>, _>| {
            out.extend(frame.expect("encode"));
            n += 1;
        };
        push(encode_request_v0(&meta, name, 1, &"junk".to_owned()));
        push(encode_request_v0(&meta, name, 2, &vec![1i32, 2, 3]));
        push(encode_request_v0(&meta, name, 3, &strange_struct));
        push(encode_request_v0(&meta, name, 4, &Gpid::new(-1, -1)));
    }
    (out, n)
}

/// The answers in `bytes` (response frames): how many, and whether each has an error name.
pub fn count_answers(bytes: &[u8]) -> Result<usize, String> {
    let mut buf = BytesMut::from(bytes);
    let mut n = 0;
    loop {
        match frame::decode_response(&mut buf, 64 << 20) {
            Ok(Some(r)) if r.error.starts_with("ERR_") => n += 1,
            Ok(Some(r)) => return Err(format!("an answer without an error name: {r:?}")),
            Ok(None) if buf.is_empty() => return Ok(n),
            Ok(None) => return Err(format!("{} bytes of a cut answer", buf.len())),
            Err(e) => return Err(format!("not an answer: {e}")),
        }
    }
}

/// HTTP requests a server must answer with a 4xx: bad bytes in the path, bad escapes, repeated
/// arguments, a body it did not ask for, a head past the bound (431).
pub fn http_junk() -> Vec<Vec<u8>> {
    let mut junk: Vec<Vec<u8>> = vec![
        b"GET \x00\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /meta/app?name=%zz%ff%&&== HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /meta/apps?detail&detail HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /../../../../etc/passwd HTTP/1.1\r\n\r\n".to_vec(),
        b"POST /updateConfig HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nxxxx".to_vec(),
        b"GET HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /\r\n\r\n".to_vec(),
    ];
    let mut long_path = b"GET /".to_vec();
    long_path.extend(std::iter::repeat_n(b'a', 20_000));
    long_path.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    junk.push(long_path);
    let mut many_headers = b"GET /health HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        many_headers.extend_from_slice(format!("X-{i}: {}\r\n", "y".repeat(100)).as_bytes());
    }
    many_headers.extend_from_slice(b"\r\n");
    junk.push(many_headers);
    junk
}

/// Slow clients: `n` connections, half trickling an HTTP head and half a THFT frame, one byte
/// each per `every`, until the server closes them or `within` passes. Returns when the last was
/// closed, or `None` if some were not.
pub fn slowloris(
    addr: SocketAddr,
    n: usize,
    every: Duration,
    within: Duration,
    while_held: impl FnOnce(),
) -> Option<Duration> {
    let frame = valid_put(1, "slow");
    let mut clients: Vec<(TcpStream, Vec<u8>, usize)> = (0..n)
        .map(|i| {
            let s = connect(addr);
            let _ = s.set_nonblocking(true);
            let bytes = if i % 2 == 0 {
                let mut head = b"GET /health HTTP/1.1\r\n".to_vec();
                for h in 0..10_000 {
                    head.extend_from_slice(format!("X-{h}: y\r\n").as_bytes());
                }
                head
            } else {
                frame.clone()
            };
            (s, bytes, 0)
        })
        .collect();
    let started = Instant::now();
    let mut hook = Some(while_held);
    let mut open = n;
    while open > 0 && started.elapsed() < within {
        open = 0;
        for (s, bytes, at) in clients.iter_mut() {
            if *at == usize::MAX {
                continue;
            }
            let mut probe = [0u8; 4096];
            let gone = match s.read(&mut probe) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            let gone = gone || (*at < bytes.len() && s.write(&bytes[*at..*at + 1]).is_err());
            if gone {
                *at = usize::MAX;
            } else {
                *at = (*at + 1).min(bytes.len());
                open += 1;
            }
        }
        if let Some(hook) = hook.take() {
            hook();
        }
        std::thread::sleep(every);
    }
    (open == 0).then(|| started.elapsed())
}

/// `n` connections opened and closed at once, `parallel` at a time; how long it took. Most are
/// reset (an abortive close, which also leaves no port of ours waiting in TIME-WAIT: tens of
/// thousands of those would slow every later connect on this machine); a third send two bytes
/// of a frame first; one in ten closes normally.
pub fn churn(addr: SocketAddr, n: usize, parallel: usize) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..parallel {
            scope.spawn(move || {
                for i in (t..n).step_by(parallel) {
                    let mut s = connect(addr);
                    if i % 3 == 0 {
                        let _ = s.write_all(b"TH");
                    }
                    if i % 10 != 0 {
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    }
                }
            });
        }
    });
    started.elapsed()
}

/// A process's resident set now and at its peak, in KiB (`VmRSS`, `VmHWM`).
pub fn rss_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The file descriptors a process holds open.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
