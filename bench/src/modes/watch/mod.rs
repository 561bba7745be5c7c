//! `--mode watch`: `WatchJobs` streams under a paced load. The paced load runs first
//! without watchers, then with them open; each watcher's stream is tallied and the
//! two runs compared.

mod paced;
mod tally;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use jobqueue::proto::{self, job_service_client::JobServiceClient};
use tokio::sync::watch;
use tonic::transport::Endpoint;

use self::paced::{Tagging, run_paced};
use self::tally::{WatchClass, follow_stream};
use super::common::{Bench, run_tag};
use crate::Args;
use crate::proc_stats::{measure_cpu, measure_peak_rss};
use crate::report::{ModeResult, fmt_ms};

/// Watch streams per HTTP/2 connection. Servers may cap concurrent streams per
/// connection (hyper's own default is 200; tonic 0.14 sends no limit unless told;
/// HTTP/2 recommends allowing at least 100), and streams past the cap would wait for
/// others to end: each group of this many watchers gets a connection of its own.
const WATCHERS_PER_CHANNEL: usize = 100;

/// Opens `tag_watchers` watches on `{prefix}{i}` and `all_watchers` with `all: true`,
/// spread over connections of their own, and returns once every stream's headers
/// have arrived: the server has subscribed them all.
async fn open_watches(
    bench: &Bench,
    prefix: &str,
    tag_watchers: usize,
    all_watchers: usize,
) -> anyhow::Result<(Vec<tonic::Streaming<proto::JobEvent>>, usize)> {
    let total = tag_watchers + all_watchers;
    let connections = total.div_ceil(WATCHERS_PER_CHANNEL);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = Endpoint::from_shared(format!("http://{}", bench.addr))
            .context("the server's address as a URI")?
            .tcp_nodelay(true)
            .connect()
            .await
            .context("connecting for the watchers")?;
        channels.push(crate::server::keyed(channel));
    }
    // Round-robin, so the busy `all` watchers land on different connections.
    let opens = (0..total).map(|k| {
        let mut client = JobServiceClient::new(channels[k % connections].clone());
        let request = if k < tag_watchers {
            proto::WatchJobsRequest {
                tags: vec![format!("{prefix}{k}")],
                ..Default::default()
            }
        } else {
            proto::WatchJobsRequest {
                all: true,
                ..Default::default()
            }
        };
        async move {
            client
                .watch_jobs(request)
                .await
                .map(tonic::Response::into_inner)
                .with_context(|| format!("opening watch {k}"))
        }
    });
    let streams = futures::future::try_join_all(opens).await?;
    Ok((streams, connections))
}

/// `--mode watch`: the paced load without watchers, then with them.
pub(crate) async fn run_watch(
    bench: &Bench,
    args: &Args,
) -> anyhow::Result<(Vec<ModeResult>, String)> {
    let jobs = args.jobs;
    let (tag_watchers, all_watchers) = (args.watchers, args.watch_all);

    // The same jobs, tags included, with nobody watching.
    let base_tagging = Tagging {
        prefix: format!("w-{}-base-", bench.run_id),
        count: tag_watchers,
    };
    let (mut base, _) = run_paced(bench, "nowatch", jobs, args.rate, &base_tagging).await?;
    base.extra_json
        .extend([("watchers", "0".into()), ("watch_all", "0".into())]);

    let tagging = Tagging {
        prefix: format!("w-{}-", bench.run_id),
        count: tag_watchers,
    };
    eprintln!("watch: opening {tag_watchers} tag watchers and {all_watchers} all-job watchers");
    let opening = Instant::now();
    let (streams, connections) =
        open_watches(bench, &tagging.prefix, tag_watchers, all_watchers).await?;
    let open_time = opening.elapsed();
    eprintln!(
        "watch: {} streams open on {connections} connections in {:.2}s",
        streams.len(),
        open_time.as_secs_f64()
    );
    let run_tag: Arc<str> = run_tag(bench, "watch").into();
    let opened = SystemTime::now();
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, stream)| {
            let planned = if k < tag_watchers {
                tagging.planned(jobs, k)
            } else {
                jobs
            };
            tokio::spawn(follow_stream(
                stream,
                planned,
                run_tag.clone(),
                opened,
                stopped.clone(),
            ))
        })
        .collect();

    if args.watch_settle_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.watch_settle_ms)).await;
    }
    let (mut watched, paced) = run_paced(bench, "watch", jobs, args.rate, &tagging).await?;
    let all_succeeded = paced.started + watched.end_to_end.unwrap_or_default();
    let grace = Duration::from_secs(args.watch_grace_secs);
    eprintln!(
        "watch: every job SUCCEEDED; waiting up to {}s for the watchers",
        grace.as_secs()
    );
    let all_done = futures::future::join_all(tasks);
    tokio::pin!(all_done);
    let tallies = tokio::select! {
        tallies = &mut all_done => tallies,
        _ = tokio::time::sleep(grace) => {
            let _ = stop.send(true);
            all_done.await
        }
    };
    // The watch run's server figures run until the last watcher was done (or given up
    // on), so they include delivering every change.
    watched.cpu = measure_cpu(
        bench.server_proc,
        bench.clock_ticks_per_sec,
        paced.cpu_at_start,
    );
    watched.peak_rss = measure_peak_rss(bench.server_proc, paced.rss_was_reset);

    let accepted = watched.submitted;
    let mut tag_class = WatchClass::default();
    let mut all_class = WatchClass::default();
    for (k, tally) in tallies.into_iter().enumerate() {
        let tally = tally.context("a watcher task panicked")?;
        if k < tag_watchers {
            tag_class.add(tally, paced.accepted_per_tag[k]);
        } else {
            all_class.add(tally, accepted);
        }
    }
    tag_class.finish();
    all_class.finish();
    let last_done = tag_class.last_done.max(all_class.last_done);
    let every_watcher_done =
        tag_class.completed + all_class.completed == tag_watchers + all_watchers;
    let watchers_done_s = last_done
        .filter(|_| every_watcher_done)
        .map(|at| at.duration_since(paced.started).as_secs_f64());

    let base_rate = base.jobs_per_sec();
    let watch_rate = watched.jobs_per_sec();
    let ratio = match (base_rate, watch_rate) {
        (Some(base), Some(watch)) if base > 0.0 => Some(watch / base),
        _ => None,
    };
    let offered = args.rate as f64;
    // End to end includes draining the last jobs, so a run that kept up lands a
    // little under the offered rate.
    let rate_limited = base_rate.is_some_and(|r| r >= 0.95 * offered)
        && watch_rate.is_some_and(|r| r >= 0.95 * offered);
    let within_10 = ratio.map(|r| r >= 0.9);

    let mut extra = vec![
        ("watchers", tag_watchers.to_string()),
        ("watch_all", all_watchers.to_string()),
        ("watch_connections", connections.to_string()),
        ("watch_open_s", format!("{:.3}", open_time.as_secs_f64())),
        ("watch_settle_ms", args.watch_settle_ms.to_string()),
    ];
    extra.extend(tag_class.json_fields("tag"));
    extra.extend(all_class.json_fields("all"));
    extra.extend([
        (
            "watchers_done_s",
            watchers_done_s.map_or("null".into(), |s| format!("{s:.3}")),
        ),
        (
            "jobs_per_sec_ratio_to_nowatch",
            ratio.map_or("null".into(), |r| format!("{r:.3}")),
        ),
        ("offered_rate_is_limit", rate_limited.to_string()),
        (
            "within_10_percent_of_nowatch",
            within_10.map_or("null".into(), |w| w.to_string()),
        ),
    ]);
    watched.extra_json.extend(extra);

    let mut out = String::new();
    let per_tag = if tag_watchers > 0 {
        format!("{} jobs each", jobs.div_ceil(tag_watchers))
    } else {
        "none".into()
    };
    let _ = writeln!(
        out,
        "watch: {tag_watchers} tag watchers (a tag each, {per_tag}) and {all_watchers} \
         all-job watchers on {connections} connections, opened in {:.2}s, all open \
         (stream headers received) {}ms before the first submit.",
        open_time.as_secs_f64(),
        args.watch_settle_ms
    );
    let _ = writeln!(
        out,
        "{:<8} {:>8} {:>9} {:>10} {:>10} {:>7} {:>6} {:>12} {:>32}",
        "watchers",
        "count",
        "complete",
        "expected",
        "received",
        "lost",
        "dups",
        "out-of-order",
        "delivery p50 / p99 / max ms"
    );
    for (name, class) in [("tag", &tag_class), ("all", &all_class)] {
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>9} {:>10} {:>10} {:>7} {:>6} {:>12} {:>32}",
            name,
            class.watchers,
            class.completed,
            class.expected,
            class.received,
            class.lost,
            class.duplicates,
            class.out_of_order,
            format!(
                "{} / {} / {}",
                fmt_ms(class.latency(50.0)),
                fmt_ms(class.latency(99.0)),
                fmt_ms(class.max_latency())
            ),
        );
    }
    let _ = writeln!(
        out,
        "expected: QUEUED, RUNNING and SUCCEEDED of each accepted job, per watcher that \
         should see it; lost = expected - received (per watcher, summed); dups = the same \
         job and status again; out-of-order = a change whose cursor is not above the \
         stream's previous one."
    );
    let _ = writeln!(
        out,
        "delivery = the watcher receiving a CHANGE (this process's clock) - the change's \
         `time` (the server's clock, same machine; whole milliseconds, stamped in the \
         writer's turn before the commit)."
    );
    match watchers_done_s {
        Some(done) => {
            let _ = writeln!(
                out,
                "every watcher had all its changes {done:.3}s after the first submit; \
                 ListJobs counted every job SUCCEEDED at {:.3}s.",
                all_succeeded.duration_since(paced.started).as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "warning: {} of {} watchers did not receive all their jobs' SUCCEEDED \
                 changes within {}s of every job being SUCCEEDED.",
                tag_watchers + all_watchers - tag_class.completed - all_class.completed,
                tag_watchers + all_watchers,
                grace.as_secs()
            );
        }
    }
    for (name, class) in [("tag", &tag_class), ("all", &all_class)] {
        if class.status_order + class.unexpected + class.foreign > 0 {
            let _ = writeln!(
                out,
                "warning: {name} watchers: {} status(es) after a later status of the same \
                 job, {} unexpected item(s) (snapshots, other statuses, unreadable fields), \
                 {} change(s) of jobs outside the run.",
                class.status_order, class.unexpected, class.foreign
            );
        }
        if let Some(reason) = &class.first_end {
            let _ = writeln!(
                out,
                "warning: {name} watchers: {} stream(s) ended early; first: {reason}",
                class.ended_early
            );
        }
        if class.lost + class.duplicates + class.out_of_order > 0 {
            let _ = writeln!(
                out,
                "warning: {name} watchers: {} lost, {} duplicate, {} out-of-order change(s).",
                class.lost, class.duplicates, class.out_of_order
            );
        }
    }
    for (name, class) in [("tag", &tag_class), ("all", &all_class)] {
        if class.worst_per_second.is_empty() {
            continue;
        }
        let worst: Vec<String> = class
            .worst_per_second
            .iter()
            .map(|ms| {
                if ms.is_finite() {
                    format!("{ms:.0}")
                } else {
                    "-".into()
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{name} watchers: worst delivery (ms) in each second since the watchers opened: {}",
            worst.join(" ")
        );
    }
    let rate = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.0}"));
    let _ = writeln!(
        out,
        "throughput: without watchers {} jobs/s, with watchers {} jobs/s; ratio {} \
         (offered {} jobs/s; the bench sent {} and {} jobs/s).",
        rate(base_rate),
        rate(watch_rate),
        ratio.map_or("-".into(), |r| format!("{r:.3}")),
        args.rate,
        base.extra_json
            .iter()
            .find(|(name, _)| *name == "sent_per_sec")
            .map_or("-", |(_, v)| v.as_str()),
        watched
            .extra_json
            .iter()
            .find(|(name, _)| *name == "sent_per_sec")
            .map_or("-", |(_, v)| v.as_str()),
    );
    let verdict = match within_10 {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    if rate_limited {
        let _ = writeln!(
            out,
            "both runs reached the offered rate: it is the limit, not the server. With \
             watchers the achieved rate is within 10% of without: {verdict}."
        );
    } else {
        let _ = writeln!(
            out,
            "at least one run fell short of the offered rate (the server was the limit \
             there). With watchers within 10% of without: {verdict}."
        );
    }
    let _ = writeln!(
        out,
        "watch: server CPU and peak RSS run until the last watcher was done; the bench's \
         own CPU includes decoding every watcher's stream."
    );
    Ok((vec![base, watched], out))
}
