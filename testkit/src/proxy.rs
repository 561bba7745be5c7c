//! A TCP proxy for fault tests. Put in front of PostgreSQL, it lets a test cut the
//! database away from the service while it is under load, and bring it back:
//!
//! - [`Proxy::cut`] resets every open connection and closes the listening socket,
//!   so the service sees its pool die and new connects refused, as when the
//!   database host goes away;
//! - [`Proxy::restore`] listens again on the same address, so the service must
//!   reconnect by itself;
//! - [`Proxy::cut_when_client_sends`] cuts at one precise moment, such as right
//!   after a `COMMIT` left for the database but before its answer came back,
//!   which sleeping and cutting cannot hit reliably. It reads the bytes as they
//!   pass, so it sees a `COMMIT` only on a plaintext connection: add
//!   `sslmode=disable` to a PostgreSQL URL that goes through it.
//!
//! Everything listens on 127.0.0.1 only.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// How many bytes of a connection's previous chunk are kept, at least, so that a
/// needle sent across two reads is still found.
const TAIL_KEEP: usize = 256;

/// A running proxy; it stops accepting and closes every connection when dropped.
pub struct Proxy {
    /// Where clients connect; it stays the same across `cut` and `restore`.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    accepted: AtomicUsize,
    state: Mutex<State>,
    trap: Mutex<Option<Trap>>,
    /// Which trap was armed last and which fired last, so that a trap fired
    /// before a re-arm does not satisfy a wait for the new one.
    traps: watch::Sender<Traps>,
}

struct State {
    /// The listener and connections of the current listening period.
    current: Arc<Generation>,
    cut: bool,
}

/// One listening period, from `start` or `restore` to the next cut. Its tasks
/// hold receivers of `cancel`: sending `true` stops them, and once every
/// receiver is gone, its listener and connections are closed.
struct Generation {
    cancel: watch::Sender<bool>,
}

struct Trap {
    needle: &'static [u8],
    forward: bool,
    epoch: u64,
}

#[derive(Clone, Copy, Default)]
struct Traps {
    armed: u64,
    fired: u64,
}

impl Proxy {
    /// Listens on 127.0.0.1 on a port the system picks; forwards every
    /// connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let (cancel, _) = watch::channel(false);
        let generation = Arc::new(Generation { cancel });
        let shared = Arc::new(Shared {
            upstream,
            accepted: AtomicUsize::new(0),
            state: Mutex::new(State {
                current: generation.clone(),
                cut: false,
            }),
            trap: Mutex::new(None),
            traps: watch::Sender::new(Traps::default()),
        });
        spawn_accept(listener, generation, shared.clone());
        Ok(Proxy { addr, shared })
    }

    /// Cuts: resets every open connection, both ways, and closes the listening
    /// socket, so connects are refused until [`Proxy::restore`]. Returns once
    /// all of it is closed.
    pub async fn cut(&self) {
        let generation = {
            let mut state = self.shared.state.lock().unwrap();
            state.cut = true;
            state.current.cancel.send_replace(true);
            state.current.clone()
        };
        generation.cancel.closed().await;
    }

    /// Listens again on the same address, with SO_REUSEADDR so that connections
    /// left in TIME_WAIT do not stand in the way, and forwards new connections.
    /// Does nothing if it is not cut.
    pub async fn restore(&self) -> io::Result<()> {
        loop {
            let old = {
                let state = self.shared.state.lock().unwrap();
                if !state.cut {
                    return Ok(());
                }
                state.current.clone()
            };
            // A cut made by a trap may still be closing; the old listener must
            // be gone before the address can be bound again.
            old.cancel.closed().await;
            let mut state = self.shared.state.lock().unwrap();
            if !state.cut {
                return Ok(());
            }
            if !Arc::ptr_eq(&state.current, &old) {
                continue;
            }
            let listener = listen(self.addr)?;
            let (cancel, _) = watch::channel(false);
            let generation = Arc::new(Generation { cancel });
            spawn_accept(listener, generation.clone(), self.shared.clone());
            state.current = generation;
            state.cut = false;
            return Ok(());
        }
    }

    /// Arms a one-shot trap: the next client→upstream chunk that contains
    /// `needle` (also when it straddles two reads) is forwarded to upstream if
    /// `forward`, or dropped if not, and then the proxy cuts as
    /// [`Proxy::cut`] does. Await [`Proxy::trapped`] to learn when it fired.
    /// Arming again replaces a trap that has not fired.
    ///
    /// Bytes sent before arming do not fire it. Nothing upstream sends after
    /// the chunk reaches the client, so with `forward` a `COMMIT` is applied but
    /// its answer is lost, which is the case a client cannot tell from a failed
    /// commit. PostgreSQL's simple-query message for `COMMIT` carries the ASCII
    /// bytes `COMMIT`.
    pub fn cut_when_client_sends(&self, needle: &'static [u8], forward: bool) {
        assert!(!needle.is_empty(), "an empty needle would match anything");
        let mut trap = self.shared.trap.lock().unwrap();
        let mut epoch = 0;
        self.shared.traps.send_modify(|t| {
            t.armed += 1;
            epoch = t.armed;
        });
        *trap = Some(Trap {
            needle,
            forward,
            epoch,
        });
    }

    /// Resolves once the trap armed last has fired and its cut is complete; at
    /// once if that already happened. Never resolves if no trap was armed.
    pub async fn trapped(&self) {
        let mut traps = self.shared.traps.subscribe();
        // The sender lives in `shared`, which `self` keeps, so this cannot fail.
        let _ = traps.wait_for(|t| t.armed > 0 && t.fired == t.armed).await;
    }

    /// Whether it is cut now.
    pub fn is_cut(&self) -> bool {
        self.shared.state.lock().unwrap().cut
    }

    /// Connections accepted so far, across cuts; tests read it to see that the
    /// service reconnected.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    /// Tells every task to stop; they close their sockets as soon as the runtime
    /// runs them, so no connection outlives the proxy for long.
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().unwrap();
        state.cut = true;
        state.current.cancel.send_replace(true);
    }
}

/// Binds with SO_REUSEADDR: after a cut the same port is bound again, and
/// connections that ended normally may still sit in TIME_WAIT on it.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn spawn_accept(listener: TcpListener, generation: Arc<Generation>, shared: Arc<Shared>) {
    // Subscribed here, not in the task, so that a cut made before the task first
    // runs still waits for the listener to close.
    let cancel = generation.cancel.subscribe();
    tokio::spawn(accept_loop(listener, cancel, generation, shared));
}

async fn accept_loop(
    listener: TcpListener,
    mut cancel: watch::Receiver<bool>,
    generation: Arc<Generation>,
    shared: Arc<Shared>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let cancel = generation.cancel.subscribe();
                tokio::spawn(connection(
                    client,
                    cancel,
                    generation.clone(),
                    shared.clone(),
                ));
            }
            // Out of file descriptors and the like: wait rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    // Closed before the receiver goes, so a finished `cut` means connects are
    // refused.
    drop(listener);
    drop(cancel);
}

async fn connection(
    client: TcpStream,
    mut cancel: watch::Receiver<bool>,
    generation: Arc<Generation>,
    shared: Arc<Shared>,
) {
    let mut client = client;
    let upstream = tokio::select! {
        biased;
        _ = cancel.wait_for(|c| *c) => None,
        upstream = TcpStream::connect(shared.upstream) => upstream.ok(),
    };
    let Some(mut upstream) = upstream else {
        // Upstream is down, or a cut came first: the client sees a reset, as it
        // would from a server that went away.
        let _ = client.set_zero_linger();
        drop(client);
        drop(cancel);
        return;
    };
    // Small messages (a `COMMIT`) go out at once, so a trap that forwards one
    // has it on the wire before it resets.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let outcome = {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let forward = async {
            tokio::try_join!(
                client_to_upstream(&mut client_read, &mut upstream_write, &shared, &generation),
                upstream_to_client(&mut upstream_read, &mut client_write),
            )
        };
        tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => Err(()),
            outcome = forward => outcome.map(|_| ()).map_err(|_| ()),
        }
    };
    if outcome.is_err() {
        // A cut, or one side failed: reset both, so each peer sees its
        // connection end at once instead of half open.
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
    // The sockets close before the receiver goes, so a finished `cut` means
    // every connection is closed.
    drop(client);
    drop(upstream);
    drop(cancel);
}

async fn client_to_upstream(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    shared: &Arc<Shared>,
    generation: &Arc<Generation>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut tail = Vec::new();
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        let chunk = &buf[..n];
        let Some(sprung) = shared.spring(&mut tail, chunk, generation) else {
            to.write_all(chunk).await?;
            continue;
        };
        let written = if sprung.forward {
            to.write_all(chunk).await
        } else {
            Ok(())
        };
        // Cut even if forwarding failed, so a test waiting on `trapped` ends.
        shared.fire(generation, sprung.epoch);
        written?;
        return Err(io::Error::other("cut by a trap"));
    }
}

async fn upstream_to_client(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
) -> io::Result<()> {
    tokio::io::copy(from, to).await?;
    to.shutdown().await
}

struct Sprung {
    forward: bool,
    epoch: u64,
}

impl Shared {
    /// Looks for the armed needle in the previous chunk's tail followed by
    /// `chunk`, counting only matches that end inside `chunk`, so bytes seen
    /// before arming do not fire it; takes the trap when it matches. Then keeps
    /// the new tail.
    fn spring(
        &self,
        tail: &mut Vec<u8>,
        chunk: &[u8],
        generation: &Arc<Generation>,
    ) -> Option<Sprung> {
        let mut trap = self.trap.lock().unwrap();
        let needle_len = trap.as_ref().map_or(0, |t| t.needle.len());
        let mut sprung = None;
        if let Some(armed) = trap.as_ref() {
            let mut window = Vec::with_capacity(tail.len() + chunk.len());
            window.extend_from_slice(tail);
            window.extend_from_slice(chunk);
            let skip = tail.len().saturating_sub(needle_len - 1);
            let found = window[skip..]
                .windows(needle_len)
                .any(|w| w == armed.needle);
            // A connection of a period already cut is going away anyway; the
            // trap is left for the next period.
            let live = || {
                let state = self.state.lock().unwrap();
                !state.cut && Arc::ptr_eq(&state.current, generation)
            };
            if found && live() {
                sprung = trap.take().map(|t| Sprung {
                    forward: t.forward,
                    epoch: t.epoch,
                });
            }
        }
        drop(trap);
        let keep = TAIL_KEEP.max(needle_len.saturating_sub(1));
        if chunk.len() >= keep {
            tail.clear();
            tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            tail.extend_from_slice(chunk);
            let excess = tail.len().saturating_sub(keep);
            tail.drain(..excess);
        }
        sprung
    }

    /// Cuts the trapping connection's period as `Proxy::cut` does, and reports
    /// the trap fired once everything of that period is closed.
    fn fire(self: &Arc<Self>, generation: &Arc<Generation>, epoch: u64) {
        {
            let mut state = self.state.lock().unwrap();
            if Arc::ptr_eq(&state.current, generation) {
                state.cut = true;
            }
            generation.cancel.send_replace(true);
        }
        let shared = self.clone();
        let generation = generation.clone();
        // A task, because the trapping connection is one of those waited for.
        tokio::spawn(async move {
            generation.cancel.closed().await;
            shared.traps.send_modify(|t| t.fired = t.fired.max(epoch));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes what it reads and records all of it.
    struct Echo {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<u8>>>,
        open: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Echo {
        async fn start() -> Echo {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let open = Arc::new(AtomicUsize::new(0));
            let (task_seen, task_open) = (seen.clone(), open.clone());
            let task = tokio::spawn(async move {
                loop {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let (seen, open) = (task_seen.clone(), task_open.clone());
                    open.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        while let Ok(n @ 1..) = stream.read(&mut buf).await {
                            seen.lock().unwrap().extend_from_slice(&buf[..n]);
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
            Echo {
                addr,
                seen,
                open,
                task,
            }
        }

        fn saw(&self, bytes: &[u8]) -> bool {
            self.seen
                .lock()
                .unwrap()
                .windows(bytes.len())
                .any(|w| w == bytes)
        }

        fn open(&self) -> usize {
            self.open.load(Ordering::SeqCst)
        }
    }

    const PATIENCE: Duration = Duration::from_secs(5);

    async fn eventually(condition: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        condition()
    }

    async fn echoes(stream: &mut TcpStream, message: &[u8]) {
        stream.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut back))
            .await
            .expect("no echo in time")
            .unwrap();
        assert_eq!(back, message);
    }

    /// Reads until the connection ends with EOF or an error; false if it stays
    /// open.
    async fn ends(stream: &mut TcpStream) -> bool {
        let drain = async {
            let mut buf = [0u8; 1024];
            while let Ok(1..) = stream.read(&mut buf).await {}
        };
        tokio::time::timeout(PATIENCE, drain).await.is_ok()
    }

    async fn refused(addr: SocketAddr) -> bool {
        matches!(
            TcpStream::connect(addr).await,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
        )
    }

    /// After a drop the listener closes when the runtime next runs its task.
    async fn refused_soon(addr: SocketAddr) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if refused(addr).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let echo = Echo::start().await;
        let proxy = Proxy::start(echo.addr).await.unwrap();
        let mut a = TcpStream::connect(proxy.addr).await.unwrap();
        let mut b = TcpStream::connect(proxy.addr).await.unwrap();
        echoes(&mut a, b"hello").await;
        echoes(&mut b, &vec![7u8; 100_000]).await;
        echoes(&mut a, b"again").await;
        assert_eq!(proxy.accepted(), 2);
        assert!(!proxy.is_cut());
        assert!(echo.saw(b"hello"));

        // A client that closes its side gets the rest of the answer, then EOF.
        a.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(PATIENCE, a.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
        assert!(eventually(|| echo.open() == 1).await);
    }

    #[tokio::test]
    async fn cut_ends_open_connections_and_refuses_new_ones() {
        let echo = Echo::start().await;
        let proxy = Proxy::start(echo.addr).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        echoes(&mut client, b"before").await;

        proxy.cut().await;
        assert!(proxy.is_cut());
        assert!(ends(&mut client).await, "the open connection stayed open");
        assert!(refused(proxy.addr).await, "a new connect was not refused");
        assert!(
            eventually(|| echo.open() == 0).await,
            "the upstream side stayed open"
        );
        // Cutting again is harmless.
        proxy.cut().await;
        assert!(proxy.is_cut());
    }

    #[tokio::test]
    async fn restore_listens_again_on_the_same_address() {
        let echo = Echo::start().await;
        let proxy = Proxy::start(echo.addr).await.unwrap();
        // Not cut: nothing to do.
        proxy.restore().await.unwrap();
        let mut first = TcpStream::connect(proxy.addr).await.unwrap();
        echoes(&mut first, b"one").await;

        for round in 0..3 {
            proxy.cut().await;
            assert!(refused(proxy.addr).await);
            proxy.restore().await.unwrap();
            assert!(!proxy.is_cut());
            let mut client = TcpStream::connect(proxy.addr).await.unwrap();
            echoes(&mut client, format!("round {round}").as_bytes()).await;
        }
        assert_eq!(proxy.accepted(), 4);
        assert!(ends(&mut first).await);
    }

    #[tokio::test]
    async fn trap_forwards_the_chunk_then_cuts() {
        let echo = Echo::start().await;
        let proxy = Proxy::start(echo.addr).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        echoes(&mut client, b"BEGIN;").await;

        proxy.cut_when_client_sends(b"COMMIT", true);
        // The needle straddles two writes; the echo of the first proves it went
        // through as a chunk of its own.
        echoes(&mut client, b"xxCOM").await;
        assert!(!proxy.is_cut());
        client.write_all(b"MIT;").await.unwrap();

        tokio::time::timeout(PATIENCE, proxy.trapped())
            .await
            .expect("the trap did not fire");
        assert!(proxy.is_cut());
        assert!(
            eventually(|| echo.saw(b"xxCOMMIT;")).await,
            "the chunk was not forwarded"
        );
        assert!(ends(&mut client).await);
        assert!(refused(proxy.addr).await);
        assert!(eventually(|| echo.open() == 0).await);
        // Already fired: resolves at once.
        tokio::time::timeout(Duration::from_millis(100), proxy.trapped())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn trap_drops_the_chunk_when_told_to() {
        let echo = Echo::start().await;
        let proxy = Proxy::start(echo.addr).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        client.set_nodelay(true).unwrap();

        proxy.cut_when_client_sends(b"COMMIT", false);
        echoes(&mut client, b"xxCOM").await;
        client.write_all(b"MIT;").await.unwrap();
        tokio::time::timeout(PATIENCE, proxy.trapped())
            .await
            .expect("the trap did not fire");
        assert!(proxy.is_cut());
        assert!(ends(&mut client).await);
        // Once upstream's side is closed it can have read nothing more.
        assert!(eventually(|| echo.open() == 0).await);
        assert!(echo.saw(b"xxCOM"));
        assert!(!echo.saw(b"MIT"), "the chunk was forwarded");

        // Armed again: the old firing does not count.
        proxy.restore().await.unwrap();
        proxy.cut_when_client_sends(b"COMMIT", false);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), proxy.trapped())
                .await
                .is_err()
        );
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        client.write_all(b"COMMIT").await.unwrap();
        tokio::time::timeout(PATIENCE, proxy.trapped())
            .await
            .expect("the second trap did not fire");
    }

    #[tokio::test]
    async fn trap_ignores_bytes_sent_before_arming() {
        let echo = Echo::start().await;
        let proxy = Proxy::start(echo.addr).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        echoes(&mut client, b"xxCOMMIT").await;

        proxy.cut_when_client_sends(b"COMMIT", true);
        echoes(&mut client, b"yy").await;
        assert!(!proxy.is_cut());
        echoes(&mut client, b"zz").await;
        client.write_all(b"COMMIT").await.unwrap();
        tokio::time::timeout(PATIENCE, proxy.trapped())
            .await
            .expect("the trap did not fire");
        assert!(proxy.is_cut());
    }

    #[tokio::test]
    async fn drop_closes_everything() {
        let echo = Echo::start().await;
        let proxy = Proxy::start(echo.addr).await.unwrap();
        let addr = proxy.addr;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        echoes(&mut idle, b"ping").await;
        drop(proxy);
        assert!(
            ends(&mut idle).await,
            "an idle connection outlived the proxy"
        );
        assert!(eventually(|| echo.open() == 0).await);
        assert!(refused_soon(addr).await);
    }

    #[tokio::test]
    async fn a_client_sees_a_reset_when_upstream_is_down() {
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = gone.local_addr().unwrap();
        drop(gone);
        let proxy = Proxy::start(upstream).await.unwrap();
        // The reset may come before the connect is seen to complete; then the
        // connect itself reports it.
        match TcpStream::connect(proxy.addr).await {
            Ok(mut client) => assert!(ends(&mut client).await),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        }
        assert!(eventually(|| proxy.accepted() == 1).await);
    }
}
