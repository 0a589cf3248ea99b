//! [`http_get`]: one plain HTTP/1.1 GET, for tests of the servers the binary starts.

use std::io::{Read, Write};
use std::net::TcpStream;

/// GETs `path` from the server at `address` (`host:port`) over plain HTTP/1.1 with `Connection: close`: the
/// status, the response head in lowercase (status line and headers), and the body. Test support: it panics when
/// the server cannot be reached or the answer is not HTTP.
pub fn http_get(address: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|err| panic!("cannot connect to {address}: {err}"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
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
