//! etcd's KV API over gRPC (HTTP/2), as much of it as `pegasus_bench --etcd` needs to run the
//! same fill and read workloads against an etcd cluster, for comparison: `Put` and `Range` of
//! one key, each a unary call on one multiplexed connection.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The connection could not be made.
    #[error("connecting to etcd at {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// HTTP/2 failed.
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    /// etcd answered with a gRPC error.
    #[error("gRPC status {status}: {message}")]
    Status {
        /// `grpc-status`.
        status: String,
        /// `grpc-message`.
        message: String,
    },
}

/// A connection to one etcd member.
#[derive(Clone)]
pub struct Etcd {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

impl Etcd {
    /// Connects (HTTP/2 without TLS, as `etcd --listen-client-urls http://…` serves).
    pub async fn connect(addr: SocketAddr) -> Result<Etcd, EtcdError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| EtcdError::Connect(addr, e))?;
        tcp.set_nodelay(true)
            .map_err(|e| EtcdError::Connect(addr, e))?;
        let (send, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Etcd {
            send,
            authority: addr.to_string(),
        })
    }

    /// `KV.Put`: `key` to `value`.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        let mut request = BytesMut::with_capacity(key.len() + value.len() + 8);
        field(&mut request, 1, key);
        field(&mut request, 2, value);
        self.call("Put", request.freeze()).await.map(|_| ())
    }

    /// `KV.Range` of one key: the encoded `RangeResponse`.
    pub async fn get(&self, key: &[u8]) -> Result<Bytes, EtcdError> {
        let mut request = BytesMut::with_capacity(key.len() + 4);
        field(&mut request, 1, key);
        self.call("Range", request.freeze()).await
    }

    /// One unary gRPC call: the request message framed (no compression), the response's
    /// message unframed, `grpc-status` checked (in the trailers, or in the headers of a
    /// trailers-only answer).
    async fn call(&self, method: &str, message: Bytes) -> Result<Bytes, EtcdError> {
        let mut send = self.send.clone().ready().await?;
        let request = http::Request::post(format!(
            "http://{}/etcdserverpb.KV/{method}",
            self.authority
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a valid request");
        let (response, mut stream) = send.send_request(request, false)?;
        let mut framed = BytesMut::with_capacity(5 + message.len());
        framed.put_u8(0);
        framed.put_u32(message.len() as u32);
        framed.extend_from_slice(&message);
        stream.send_data(framed.freeze(), true)?;
        let (parts, mut body) = response.await?.into_parts();
        check(&parts.headers)?;
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        if let Some(trailers) = body.trailers().await? {
            check(&trailers)?;
        }
        let skip = 5.min(data.len());
        Ok(data.freeze().slice(skip..))
    }
}

/// `grpc-status`, when present, must be 0.
fn check(headers: &http::HeaderMap) -> Result<(), EtcdError> {
    let Some(status) = headers.get("grpc-status") else {
        return Ok(());
    };
    if status == "0" {
        return Ok(());
    }
    let text = |h: Option<&http::HeaderValue>| {
        h.and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Err(EtcdError::Status {
        status: text(Some(status)),
        message: text(headers.get("grpc-message")),
    })
}

/// A protobuf length-delimited field (`bytes`).
fn field(out: &mut BytesMut, number: u8, bytes: &[u8]) {
    out.put_u8(number << 3 | 2);
    let mut n = bytes.len() as u64;
    while n >= 0x80 {
        out.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_encoded_as_protobuf_bytes() {
        let mut out = BytesMut::new();
        field(&mut out, 1, b"k");
        field(&mut out, 2, &[7; 300]);
        assert_eq!(&out[..3], &[0x0a, 1, b'k']);
        // 300 = 0b1_0010_1100: varint 0xac 0x02.
        assert_eq!(&out[3..6], &[0x12, 0xac, 0x02]);
        assert_eq!(out.len(), 6 + 300);
    }
}
