//! A raw HTTP/1.1 client on a plain TCP socket, for the transport tests: it can send half a
//! request, lie about a body's length, or hold a connection open doing nothing, which an HTTP
//! client library will not.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// An answer as read off the socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "a JSON body ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads one response (head, then `Content-Length` bytes of body), waiting at most `within`.
/// `None` when the server closed the connection (or `within` passed) before a whole response.
pub async fn read_response(stream: &mut TcpStream, within: Duration) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(response) = parse(&buf) {
                return Some(response);
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

fn parse(buf: &[u8]) -> Option<RawResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("a Content-Length"));
    let body = buf.get(end + 4..end + 4 + length)?.to_vec();
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// Waits until the server closes the connection (EOF or reset), discarding anything it sends;
/// returns whether it did within `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let wait = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, wait).await.is_ok()
}

/// Sends `request` whole and reads the answer.
pub async fn exchange(addr: SocketAddr, request: &str) -> Option<RawResponse> {
    let mut stream = connect(addr).await;
    stream.write_all(request.as_bytes()).await.expect("send");
    read_response(&mut stream, Duration::from_secs(10)).await
}

/// A keep-alive `GET /healthz`.
pub const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
