//! A loopback HTTP/1.1 target for jobqueue's tests and benchmark. What it answers is
//! told by the request's query string, so one target serves every case:
//!
//! | parameter        | effect                                                         |
//! |------------------|----------------------------------------------------------------|
//! | `status=N`       | answer with status N (default 200)                             |
//! | `fail=K`         | the first K requests to this path answer `fail_status` (503)   |
//! | `delay_ms=N`     | wait N ms before answering                                     |
//! | `body_size=N`    | a body of N bytes of `x` (default: a small JSON document)      |
//! | `body=text|bytes`| a text body, or bytes that are not UTF-8                       |
//! | `json=DOC`       | this JSON document (percent-encoded) as the body               |
//! | `echo=1`         | the request's own body back, as JSON                           |
//! | `retry_after=S`  | add `Retry-After: S`                                           |
//! | `slow_body=1`    | send the headers, then one body byte every 100 ms, forever     |
//! | `mode=reset`     | read the request, then reset the connection                    |
//! | `mode=hang`      | read the request, never answer                                 |
//! | `mode=garbage`   | answer with bytes that are not HTTP                            |
//!
//! Every request is recorded (method, target, headers, body, arrival time), and
//! tests can wait for a number of requests instead of sleeping.
//!
//! [`proxy`] holds a TCP proxy that fault tests put in front of PostgreSQL, to cut
//! the database away under load and bring it back.

pub mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One request as the target received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    pub at_system: SystemTime,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    per_path: Mutex<HashMap<String, usize>>,
    open_connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A running target; it stops when dropped.
pub struct Target {
    pub addr: SocketAddr,
    state: Arc<State>,
    count: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Target {
    /// Starts a target on 127.0.0.1 on a port the system picks.
    pub async fn start() -> std::io::Result<Target> {
        Target::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a target listening on `addr` (port 0: one the system picks).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Target> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let (count_tx, count) = watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = accept_state.clone();
                let count_tx = count_tx.clone();
                tokio::spawn(async move {
                    state.open_connections.fetch_add(1, Ordering::SeqCst);
                    let _ = serve(stream, &state, &count_tx).await;
                    state.open_connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Target {
            addr,
            state,
            count,
            task,
        })
    }

    /// `http://127.0.0.1:PORT` followed by `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }

    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Most requests that were being answered at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn open_connections(&self) -> usize {
        self.state.open_connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived; false if `within` ran out first.
    pub async fn wait_for(&self, n: usize, within: Duration) -> bool {
        let mut count = self.count.clone();
        tokio::time::timeout(within, count.wait_for(|c| *c >= n))
            .await
            .is_ok()
    }
}

async fn serve(
    stream: TcpStream,
    state: &State,
    count_tx: &watch::Sender<usize>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().to_string();
                if name == "content-length" {
                    content_length = value.parse().unwrap_or(0);
                }
                headers.push((name, value));
            }
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body).await?;
        let received = Received {
            method,
            target: target.clone(),
            headers,
            body,
            at: Instant::now(),
            at_system: SystemTime::now(),
        };
        let path = received.path().to_string();
        let own_body = if target.contains("echo=") {
            received.body.clone()
        } else {
            Vec::new()
        };
        let seen = {
            let mut per_path = state.per_path.lock().unwrap();
            let n = per_path.entry(path.clone()).or_insert(0);
            *n += 1;
            *n
        };
        state.received.lock().unwrap().push(received);
        count_tx.send_modify(|c| *c += 1);

        let query = parse_query(&target);
        let param = |name: &str| query.get(name).map(String::as_str);
        let number = |name: &str| param(name).and_then(|v| v.parse::<u64>().ok());

        let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        let guard = InFlight(&state.in_flight);

        if let Some(ms) = number("delay_ms") {
            // Watch the connection while waiting: a client that gives up closes it,
            // and the target should notice at once, as a real server would.
            let mut probe = [0u8; 1];
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = reader.read(&mut probe) => return Ok(()),
            }
        }
        let stream = reader.get_mut();
        match param("mode") {
            Some("reset") => {
                stream.set_zero_linger()?;
                return Ok(());
            }
            Some("hang") => {
                // Wait until the client gives up and closes.
                let mut sink = [0u8; 64];
                while reader.read(&mut sink).await? > 0 {}
                return Ok(());
            }
            Some("garbage") => {
                stream.write_all(b"THIS IS NOT HTTP\r\n\r\n").await?;
                return Ok(());
            }
            _ => {}
        }
        let failing = number("fail").is_some_and(|k| seen as u64 <= k);
        let status = if failing {
            number("fail_status").unwrap_or(503)
        } else {
            number("status").unwrap_or(200)
        };
        let given = param("json").map(percent_decoded);
        let echoed = param("echo").is_some();
        let (content_type, body): (&str, Vec<u8>) = match (number("body_size"), param("body")) {
            _ if echoed => ("application/json", own_body),
            _ if given.is_some() => ("application/json", given.unwrap_or_default()),
            (Some(n), _) => ("text/plain", vec![b'x'; n as usize]),
            (None, Some("text")) => ("text/plain; charset=utf-8", b"plain words".to_vec()),
            (None, Some("bytes")) => ("application/octet-stream", vec![0xff, 0xfe, 0x00, 0x80]),
            _ => (
                "application/json",
                format!("{{\"ok\":true,\"path\":\"{path}\",\"seen\":{seen}}}").into_bytes(),
            ),
        };
        let mut head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\nx-target-seen: {seen}\r\n"
        );
        if let Some(s) = param("retry_after") {
            head.push_str(&format!("retry-after: {s}\r\n"));
        }
        if param("slow_body").is_some() {
            head.push_str("content-length: 1000000\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            loop {
                stream.write_all(b"x").await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        // The call is no longer in flight once its answer is being written: a client
        // can only start its next call after reading it, so the count never shows a
        // call that already has its answer. Counted after the write, a thread of this
        // target paused by a busy machine between the write and the count showed a
        // call still in flight while its client had started the next.
        drop(guard);
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `%XX` escapes (and `+` for a space) decoded.
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `text` with every byte but the unreserved ones as `%XX`, for a `json=` value.
pub fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_query(target: &str) -> HashMap<String, String> {
    let Some((_, query)) = target.split_once('?') else {
        return HashMap::new();
    };
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}
