//! As much of Redis's protocol (RESP) as `pegasus_bench --redis-wait` needs to run the fill and
//! read workloads against a Redis primary with replicas, for comparison with three copies: each
//! caller has its own connection (Redis's `WAIT` counts the writes of the connection it is sent
//! on), and a write is `SET` followed by `WAIT <replicas> 0`, sent together, acknowledged once
//! that many replicas have it.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Reading or writing failed.
    #[error("Redis at {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    /// Redis answered with an error, or with what the command cannot answer.
    #[error("Redis answered `{0}`")]
    Answer(String),
    /// `WAIT` returned before as many replicas as asked had the write.
    #[error("WAIT: {got} of {wanted} replicas acknowledged")]
    Short {
        /// Replicas that acknowledged.
        got: i64,
        /// Replicas asked for.
        wanted: i64,
    },
}

/// A connection to a Redis server.
pub struct Redis {
    addr: SocketAddr,
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
}

/// One reply.
enum Reply {
    Simple,
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

impl Redis {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> Result<Redis, RedisError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| RedisError::Io(addr, e))?;
        tcp.set_nodelay(true).map_err(|e| RedisError::Io(addr, e))?;
        Ok(Redis {
            addr,
            stream: BufReader::new(tcp),
            out: Vec::new(),
        })
    }

    /// `SET key value`, then `WAIT replicas 0` (0: no timeout): `Ok` once `replicas` replicas
    /// have the write.
    pub async fn set_wait(
        &mut self,
        key: &[u8],
        value: &[u8],
        replicas: i64,
    ) -> Result<(), RedisError> {
        self.out.clear();
        command(&mut self.out, &[b"SET", key, value]);
        command(
            &mut self.out,
            &[b"WAIT", replicas.to_string().as_bytes(), b"0"],
        );
        self.flush().await?;
        match self.reply().await? {
            Reply::Simple => {}
            _ => return Err(RedisError::Answer("SET: not OK".into())),
        }
        match self.reply().await? {
            Reply::Integer(got) if got >= replicas => Ok(()),
            Reply::Integer(got) => Err(RedisError::Short {
                got,
                wanted: replicas,
            }),
            _ => Err(RedisError::Answer("WAIT: not an integer".into())),
        }
    }

    /// `GET key`.
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RedisError> {
        self.out.clear();
        command(&mut self.out, &[b"GET", key]);
        self.flush().await?;
        match self.reply().await? {
            Reply::Bulk(value) => Ok(value),
            _ => Err(RedisError::Answer("GET: not a bulk string".into())),
        }
    }

    async fn flush(&mut self) -> Result<(), RedisError> {
        let addr = self.addr;
        self.stream
            .get_mut()
            .write_all(&self.out)
            .await
            .map_err(|e| RedisError::Io(addr, e))
    }

    async fn reply(&mut self) -> Result<Reply, RedisError> {
        let addr = self.addr;
        let io = |e| RedisError::Io(addr, e);
        let mut line = Vec::new();
        self.stream.read_until(b'\n', &mut line).await.map_err(io)?;
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let (kind, rest) = text.split_at(text.len().min(1));
        match kind {
            "+" => Ok(Reply::Simple),
            ":" => rest
                .parse()
                .map(Reply::Integer)
                .map_err(|_| RedisError::Answer(text.clone())),
            "$" => {
                let len: i64 = rest.parse().map_err(|_| RedisError::Answer(text.clone()))?;
                // A bulk string is at most 512 MB; a benchmark's values are far below.
                if !(-1..=(64 << 20)).contains(&len) {
                    return Err(RedisError::Answer(text));
                }
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut value = vec![0; len as usize + 2];
                self.stream.read_exact(&mut value).await.map_err(io)?;
                value.truncate(len as usize);
                Ok(Reply::Bulk(Some(value)))
            }
            _ => Err(RedisError::Answer(text)),
        }
    }
}

/// Appends a command as RESP's array of bulk strings.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"WAIT", b"2", b"0"]);
        assert_eq!(out, b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$1\r\n0\r\n");
    }
}
