//! What each watcher received, checked change by change, and the sums per class of
//! watchers (per-tag or `all`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jobqueue::proto::{self, JobStatus};
use tokio::sync::watch;

/// What one watcher received.
#[derive(Default)]
pub(super) struct WatchTally {
    /// Per job (its ULID as a number): the statuses received, one bit each.
    seen: HashMap<u128, u8>,
    /// Per CHANGE event of the run's jobs: received minus the change's time, in ms.
    latencies_ms: Vec<f32>,
    /// Distinct (job, status) changes received of the three expected statuses.
    received: usize,
    /// Distinct jobs whose SUCCEEDED change arrived.
    succeeded: usize,
    /// A (job, status) change received again.
    duplicates: usize,
    /// A CHANGE whose cursor is not above the previous item's (a HEARTBEAT's cursor
    /// may equal it).
    out_of_order: usize,
    /// A status received after a later status of the same job.
    status_order: usize,
    /// Items that should never come: snapshots, other statuses, unreadable ids,
    /// cursors or times.
    unexpected: usize,
    /// Changes of jobs outside the run (on `all` watchers, from anyone else).
    foreign: usize,
    heartbeats: usize,
    last_cursor: Option<i64>,
    /// Why the stream ended before the watcher had all its jobs' SUCCEEDED changes.
    ended: Option<String>,
    /// When the last of its jobs' SUCCEEDED changes arrived.
    done_at: Option<Instant>,
    /// The highest delivery latency per second since the watchers opened, in ms.
    worst_per_second: Vec<f32>,
}

impl WatchTally {
    fn record(
        &mut self,
        event: proto::JobEvent,
        received: SystemTime,
        opened: SystemTime,
        run_tag: &str,
    ) {
        let cursor = event.cursor.parse::<i64>().ok();
        match proto::JobEventKind::try_from(event.kind) {
            Ok(proto::JobEventKind::Change) => {}
            Ok(proto::JobEventKind::Heartbeat) => {
                self.heartbeats += 1;
                match cursor {
                    Some(cursor) => self.follow_cursor(cursor, false),
                    None => self.unexpected += 1,
                }
                return;
            }
            _ => {
                self.unexpected += 1;
                return;
            }
        }
        match cursor {
            Some(cursor) => self.follow_cursor(cursor, true),
            None => self.unexpected += 1,
        }
        if !event.tags.iter().any(|tag| tag == run_tag) {
            self.foreign += 1;
            return;
        }
        match event
            .event_time
            .as_ref()
            .and_then(|t| delivery_ms(t, received))
        {
            Some(latency) => {
                let latency = latency as f32;
                self.latencies_ms.push(latency);
                let second = received
                    .duration_since(opened)
                    .map_or(0, |d| d.as_secs() as usize);
                if self.worst_per_second.len() <= second {
                    self.worst_per_second.resize(second + 1, f32::NEG_INFINITY);
                }
                let worst = &mut self.worst_per_second[second];
                *worst = worst.max(latency);
            }
            None => self.unexpected += 1,
        }
        let bit: u8 = match JobStatus::try_from(event.status) {
            Ok(JobStatus::Queued) => 1,
            Ok(JobStatus::Running) => 2,
            Ok(JobStatus::Succeeded) => 4,
            _ => {
                self.unexpected += 1;
                return;
            }
        };
        let Some(job) = job_key(&event.job_id) else {
            self.unexpected += 1;
            return;
        };
        let seen = self.seen.entry(job).or_insert(0);
        if *seen & bit != 0 {
            self.duplicates += 1;
            return;
        }
        // Any bit above this status's: a later status came first.
        if *seen & !(bit | (bit - 1)) != 0 {
            self.status_order += 1;
        }
        *seen |= bit;
        self.received += 1;
        if bit == 4 {
            self.succeeded += 1;
        }
    }

    /// A change must come after every item before it; a heartbeat may repeat the
    /// newest cursor.
    fn follow_cursor(&mut self, cursor: i64, change: bool) {
        if let Some(last) = self.last_cursor {
            if cursor < last || (change && cursor == last) {
                self.out_of_order += 1;
            }
            self.last_cursor = Some(last.max(cursor));
        } else {
            self.last_cursor = Some(cursor);
        }
    }
}

/// `received` minus `made`, in milliseconds (negative if the clocks disagree).
fn delivery_ms(made: &prost_types::Timestamp, received: SystemTime) -> Option<f64> {
    let received = received.duration_since(UNIX_EPOCH).ok()?.as_nanos() as i128;
    let made = i128::from(made.seconds) * 1_000_000_000 + i128::from(made.nanos);
    Some((received - made) as f64 / 1e6)
}

/// A job id's ULID (`j_` and 26 Crockford base32 digits) as a number: a compact key.
fn job_key(id: &str) -> Option<u128> {
    let ulid = id.strip_prefix("j_")?;
    if ulid.len() != 26 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, c) in ulid.bytes().enumerate() {
        let c = c.to_ascii_uppercase();
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'H' => c - b'A' + 10,
            b'J' | b'K' => c - b'J' + 18,
            b'M' | b'N' => c - b'M' + 20,
            b'P'..=b'T' => c - b'P' + 22,
            b'V'..=b'Z' => c - b'V' + 27,
            _ => return None,
        };
        // 26 digits are 130 bits; a ULID's first digit uses only 3 of its 5.
        if i == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | u128::from(digit);
    }
    Some(value)
}

/// Reads one watch stream until `planned` jobs have had their SUCCEEDED change, the
/// stream ends, or the bench says stop.
pub(super) async fn follow_stream(
    mut stream: tonic::Streaming<proto::JobEvent>,
    planned: usize,
    run_tag: Arc<str>,
    opened: SystemTime,
    mut stop: watch::Receiver<bool>,
) -> WatchTally {
    let mut tally = WatchTally::default();
    while tally.succeeded < planned {
        let item = tokio::select! {
            item = stream.message() => item,
            _ = stop.wait_for(|stop| *stop) => {
                tally.ended = Some("still open when the bench stopped waiting".into());
                break;
            }
        };
        let received = SystemTime::now();
        match item {
            Ok(Some(event)) => tally.record(event, received, opened, &run_tag),
            Ok(None) => {
                tally.ended = Some("the server ended the stream".into());
                break;
            }
            Err(status) => {
                tally.ended = Some(format!("the stream failed: {status}"));
                break;
            }
        }
    }
    if tally.succeeded >= planned {
        tally.done_at = Some(Instant::now());
    }
    tally
}

/// One class of watchers (per-tag or `all`), summed.
#[derive(Default)]
pub(super) struct WatchClass {
    pub(super) watchers: usize,
    /// Watchers that received every one of their jobs' SUCCEEDED changes.
    pub(super) completed: usize,
    /// Changes that should have arrived: 3 per accepted job per watcher.
    pub(super) expected: usize,
    pub(super) received: usize,
    pub(super) lost: usize,
    pub(super) duplicates: usize,
    pub(super) out_of_order: usize,
    pub(super) status_order: usize,
    pub(super) unexpected: usize,
    pub(super) foreign: usize,
    pub(super) heartbeats: usize,
    /// Watchers whose stream ended early, and the first reason.
    pub(super) ended_early: usize,
    pub(super) first_end: Option<String>,
    /// Sorted.
    pub(super) latencies_ms: Vec<f32>,
    pub(super) last_done: Option<Instant>,
    /// The highest delivery latency per second since the watchers opened, in ms.
    pub(super) worst_per_second: Vec<f32>,
}

impl WatchClass {
    pub(super) fn add(&mut self, tally: WatchTally, accepted_jobs: usize) {
        let expected = 3 * accepted_jobs;
        self.watchers += 1;
        self.completed += usize::from(tally.done_at.is_some());
        self.expected += expected;
        self.received += tally.received;
        self.lost += expected.saturating_sub(tally.received);
        self.duplicates += tally.duplicates;
        self.out_of_order += tally.out_of_order;
        self.status_order += tally.status_order;
        self.unexpected += tally.unexpected;
        self.foreign += tally.foreign;
        self.heartbeats += tally.heartbeats;
        if let Some(reason) = tally.ended {
            self.ended_early += 1;
            self.first_end.get_or_insert(reason);
        }
        self.latencies_ms.extend(tally.latencies_ms);
        self.last_done = self.last_done.max(tally.done_at);
        if self.worst_per_second.len() < tally.worst_per_second.len() {
            self.worst_per_second
                .resize(tally.worst_per_second.len(), f32::NEG_INFINITY);
        }
        for (worst, seen) in self.worst_per_second.iter_mut().zip(tally.worst_per_second) {
            *worst = worst.max(seen);
        }
    }

    pub(super) fn finish(&mut self) {
        self.latencies_ms.sort_by(f32::total_cmp);
    }

    pub(super) fn latency(&self, p: f64) -> Option<f64> {
        sorted_percentile(&self.latencies_ms, p)
    }

    pub(super) fn max_latency(&self) -> Option<f64> {
        self.latencies_ms.last().map(|v| f64::from(*v))
    }

    pub(super) fn json_fields(&self, prefix: &'static str) -> Vec<(&'static str, String)> {
        let num = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.2}"));
        let name = |field: &'static str| -> &'static str {
            match (prefix, field) {
                ("tag", "watchers") => "tag_watchers",
                ("tag", "completed") => "tag_watchers_completed",
                ("tag", "expected") => "tag_events_expected",
                ("tag", "received") => "tag_events_received",
                ("tag", "lost") => "tag_events_lost",
                ("tag", "duplicates") => "tag_duplicates",
                ("tag", "out_of_order") => "tag_out_of_order",
                ("tag", "status_order") => "tag_status_order_violations",
                ("tag", "unexpected") => "tag_unexpected_items",
                ("tag", "ended_early") => "tag_streams_ended_early",
                ("tag", "p50") => "tag_delivery_p50_ms",
                ("tag", "p99") => "tag_delivery_p99_ms",
                ("tag", "max") => "tag_delivery_max_ms",
                (_, "watchers") => "all_watchers",
                (_, "completed") => "all_watchers_completed",
                (_, "expected") => "all_events_expected",
                (_, "received") => "all_events_received",
                (_, "lost") => "all_events_lost",
                (_, "duplicates") => "all_duplicates",
                (_, "out_of_order") => "all_out_of_order",
                (_, "status_order") => "all_status_order_violations",
                (_, "unexpected") => "all_unexpected_items",
                (_, "ended_early") => "all_streams_ended_early",
                (_, "p50") => "all_delivery_p50_ms",
                (_, "p99") => "all_delivery_p99_ms",
                _ => "all_delivery_max_ms",
            }
        };
        vec![
            (name("watchers"), self.watchers.to_string()),
            (name("completed"), self.completed.to_string()),
            (name("expected"), self.expected.to_string()),
            (name("received"), self.received.to_string()),
            (name("lost"), self.lost.to_string()),
            (name("duplicates"), self.duplicates.to_string()),
            (name("out_of_order"), self.out_of_order.to_string()),
            (name("status_order"), self.status_order.to_string()),
            (name("unexpected"), self.unexpected.to_string()),
            (name("ended_early"), self.ended_early.to_string()),
            (name("p50"), num(self.latency(50.0))),
            (name("p99"), num(self.latency(99.0))),
            (name("max"), num(self.max_latency())),
        ]
    }
}

/// Nearest-rank percentile of sorted samples.
fn sorted_percentile(sorted: &[f32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(f64::from(sorted[rank.clamp(1, sorted.len()) - 1]))
}
