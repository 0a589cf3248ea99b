//! [`http_get`] and [`http_post`]: one plain HTTP/1.1 request, for tests of the servers the binary starts.

use std::io::{Read, Write};
use std::net::TcpStream;

/// GETs `path` from the server at `address` (`host:port`) over plain HTTP/1.1 with `Connection: close`: the
/// status, the response head in lowercase (status line and headers), and the body. Test support: it panics when
/// the server cannot be reached or the answer is not HTTP.
pub fn http_get(address: &str, path: &str) -> (u16, String, String) {
    request(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

/// POSTs the JSON `body` to `path` of the server at `address`, like [`http_get`]: the status, the response head
/// in lowercase and the body.
pub fn http_post(address: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    request(
        address,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        ),
        body,
    )
}

fn request(address: &str, head: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|err| panic!("cannot connect to {address}: {err}"));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .unwrap_or_else(|err| panic!("cannot send to {address}: {err}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|err| panic!("cannot read the answer of {address}: {err}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_lowercase(), body.to_owned())
}
