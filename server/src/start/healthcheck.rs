//! `pegasus_server healthcheck ADDR`, for container healthchecks.

use std::net::SocketAddr;
use std::process::ExitCode;

/// `pegasus_server healthcheck ADDR`: 0 if the server at `ADDR` answers `GET /health`, else 1
/// (for container healthchecks: images have no curl).
pub fn healthcheck(addr: &str) -> ExitCode {
    use std::io::{Read, Write};
    let healthy = (|| -> std::io::Result<bool> {
        let addr: SocketAddr = addr.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
        })?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: pegasus\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(&head == b"HTTP/1.1 200")
    })();
    match healthy {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: {addr} answered, but not 200");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}
