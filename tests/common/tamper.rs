//! A tampering proxy for tests: forwards each HTTP/1.1 request to a server and lets the test
//! rewrite the answer first — what a hostile server, or anyone on the way over plain http,
//! could send. One thread per client connection (keep-alive kept); each request goes to the
//! server as HTTP/1.0 on a connection of its own, so the answer ends where the server closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// An answer on its way back, for the rewrite to change.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON answer")
    }
    pub fn set_json(&mut self, v: &serde_json::Value) {
        self.body = serde_json::to_vec(v).unwrap();
    }
}

/// Called with the method, the request target (path and query, as sent) and the answer.
pub type Rewrite = Arc<dyn Fn(&str, &str, &mut Answer) + Send + Sync>;

pub struct Tamper {
    /// host:port to give clients.
    pub addr: String,
}

impl Tamper {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `upstream` (host:port).
    pub fn start(upstream: &str, rewrite: Rewrite) -> Tamper {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let (up, rw) = (upstream.clone(), rewrite.clone());
                std::thread::spawn(move || {
                    let _ = serve(c, &up, &rw);
                });
            }
        });
        Tamper { addr }
    }
}

type Headers = Vec<(String, String)>;

/// A request line or status line and its headers; `None` at a clean end of stream.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<(String, Headers)>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = vec![];
    loop {
        let mut l = String::new();
        r.read_line(&mut l)?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first.trim_end().to_string(), headers)))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A body sent with `Transfer-Encoding: chunked`.
fn read_chunked(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut out = vec![];
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn serve(client: TcpStream, upstream: &str, rewrite: &Rewrite) -> std::io::Result<()> {
    let mut out = client.try_clone()?;
    let mut r = BufReader::new(client);
    while let Some((line, headers)) = read_head(&mut r)? {
        let body = if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            read_chunked(&mut r)?
        } else {
            let n: usize = header(&headers, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut b = vec![0; n];
            r.read_exact(&mut b)?;
            b
        };
        let mut parts = line.split(' ');
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        // To the server: HTTP/1.0, one connection per request, the client's Host kept (so the
        // identity catalog names the proxy).
        let mut up = TcpStream::connect(upstream)?;
        let mut req = format!("{method} {target} HTTP/1.0\r\n");
        for (k, v) in &headers {
            if !["connection", "content-length", "transfer-encoding", "keep-alive"]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
            {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        up.write_all(req.as_bytes())?;
        up.write_all(&body)?;
        let mut ur = BufReader::new(up);
        let Some((status_line, uh)) = read_head(&mut ur)? else {
            return Ok(());
        };
        let mut ub = vec![];
        if header(&uh, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            ub = read_chunked(&mut ur)?;
        } else {
            ur.read_to_end(&mut ub)?;
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        let length = header(&uh, "content-length").map(|v| v.to_string());
        let mut a = Answer {
            status,
            headers: uh
                .into_iter()
                .filter(|(k, _)| {
                    !["connection", "content-length", "transfer-encoding", "keep-alive"]
                        .iter()
                        .any(|h| k.eq_ignore_ascii_case(h))
                })
                .collect(),
            body: ub,
        };
        rewrite(&method, &target, &mut a);
        let mut head = format!("HTTP/1.1 {} X\r\n", a.status);
        for (k, v) in &a.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        // (a HEAD answer says the length of what a GET would send)
        let n = match (&method[..], length) {
            ("HEAD", Some(l)) => l,
            _ => a.body.len().to_string(),
        };
        head.push_str(&format!("Content-Length: {n}\r\n\r\n"));
        out.write_all(head.as_bytes())?;
        if method != "HEAD" {
            out.write_all(&a.body)?;
        }
        out.flush()?;
    }
    Ok(())
}
