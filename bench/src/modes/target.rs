//! `--mode target`: the loopback HTTP target alone, as a process of its own, for a
//! system other than jobqueue to call (`bench/pg_side_by_side.sh` points
//! graphile-worker at it), so both are measured against the same target.

use std::net::SocketAddr;

use anyhow::Context;
use testkit::Target;
use tokio::signal::unix::{SignalKind, signal};

/// Serves on `listen` until SIGTERM or SIGINT, then prints what it received as
/// one JSON line.
pub(crate) async fn run_target(listen: SocketAddr) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let target = Target::start_on(listen)
        .await
        .with_context(|| format!("starting the HTTP target on {listen}"))?;
    // The line a script waits for; stdout is a pipe there, so flush it now.
    println!("target listening on {}", target.url(""));
    use std::io::Write as _;
    std::io::stdout().flush().context("writing to stdout")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    println!(
        "{{\"mode\":\"target\",\"requests\":{},\"max_in_flight\":{},\"open_connections\":{}}}",
        target.count(),
        target.max_in_flight(),
        target.open_connections()
    );
    Ok(())
}
