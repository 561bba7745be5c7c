//! Timetables: when a schedule is due, and which due times to fire after a delay.
//! Pure: every function is given the time it computes from, so tests need no clock.
//! Times are milliseconds since the Unix epoch, as in the store.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use chrono::{SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::wall_clock;

/// How a schedule's due times are laid out.
#[derive(Debug, Clone)]
pub enum Timing {
    /// The instants a cron expression matches, on the wall clock of `zone`.
    Cron { cron: Box<Cron>, zone: Tz },
    /// `anchor`, then every `every_ms` after it.
    Interval { every_ms: i64, anchor: i64 },
    /// One instant.
    Once { at: i64 },
}

/// A timing within optional bounds: no due time before `start` or after `end`.
#[derive(Debug, Clone)]
pub struct Timetable {
    pub timing: Timing,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// Reads a cron expression: five fields, or six with seconds first, or an alias
/// such as `@daily`. A year field is not part of the contract.
///
/// A schedule's expression is read each time it fires, and reading one costs many
/// times what finding its next due time does; expressions read before are kept, up to
/// [`PARSED_KEPT`] of them.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    let mut parsed = PARSED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(cron) = parsed.get(expression) {
        return Ok(cron.clone());
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| {
            format!(
                "{e}; expected five fields (minute hour day-of-month month day-of-week), \
                 or six with seconds first, or an alias such as @daily"
            )
        })?;
    if parsed.len() >= PARSED_KEPT {
        parsed.clear();
    }
    parsed.insert(expression.to_string(), cron.clone());
    Ok(cron)
}

/// How many distinct expressions [`parse_cron`] keeps read.
const PARSED_KEPT: usize = 4096;

static PARSED: LazyLock<Mutex<HashMap<String, Cron>>> = LazyLock::new(Default::default);

/// Reads an IANA time zone name; empty means UTC.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| format!("{name:?} is not an IANA time zone name"))
}

const SECOND: i64 = 1000;

impl Timetable {
    /// The first due time at or after `t`.
    pub fn at_or_after(&self, t: i64) -> Option<i64> {
        let t = self.start.map_or(t, |start| t.max(start));
        let due = match &self.timing {
            // Cron matches whole seconds: from the first one at or after `t`.
            Timing::Cron { cron, zone } => {
                wall_clock::at_or_after(cron, *zone, (t + SECOND - 1).div_euclid(SECOND))
                    .map(|due| due * SECOND)
            }
            Timing::Interval { every_ms, anchor } => {
                if t <= *anchor {
                    Some(*anchor)
                } else {
                    let steps = (t - anchor + every_ms - 1) / every_ms;
                    Some(anchor + steps * every_ms)
                }
            }
            Timing::Once { at } => (*at >= t).then_some(*at),
        }?;
        self.end.is_none_or(|end| due <= end).then_some(due)
    }

    /// The first due time strictly after `t`.
    pub fn after(&self, t: i64) -> Option<i64> {
        self.at_or_after(t + 1)
    }

    /// The latest due time at or before `t`.
    pub fn at_or_before(&self, t: i64) -> Option<i64> {
        let t = self.end.map_or(t, |end| t.min(end));
        let due = match &self.timing {
            Timing::Cron { cron, zone } => {
                wall_clock::at_or_before(cron, *zone, t.div_euclid(SECOND)).map(|due| due * SECOND)
            }
            Timing::Interval { every_ms, anchor } => {
                (t >= *anchor).then(|| anchor + (t - anchor) / every_ms * every_ms)
            }
            Timing::Once { at } => (*at <= t).then_some(*at),
        }?;
        self.start.is_none_or(|start| due >= start).then_some(due)
    }

    /// Up to `n` due times at or after `t`, in order.
    pub fn upcoming(&self, t: i64, n: usize) -> Vec<i64> {
        let mut times = Vec::with_capacity(n);
        let mut next = self.at_or_after(t);
        while let Some(due) = next {
            if times.len() == n {
                break;
            }
            times.push(due);
            next = self.after(due);
        }
        times
    }
}

/// The due times to fire now, and the one after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// In order; each becomes one run.
    pub fires: Vec<i64>,
    /// The next due time not fired yet: still due (when `limit` cut the plan
    /// short) or in the future; `None` when the timetable has no more.
    pub next: Option<i64>,
}

/// What to fire at `now` for a schedule next due at `due`. Due times missed by no
/// more than `catchup_ms` fire each on its own, late. Older ones fold into one run,
/// for the latest of them: after an outage a schedule catches up with one run, not
/// with a flood. At most `limit` runs; the rest stays due.
pub fn plan(timetable: &Timetable, due: i64, now: i64, catchup_ms: i64, limit: usize) -> Plan {
    let mut fires = Vec::new();
    let mut next = Some(due);
    let window_opens = now - catchup_ms;
    if due < window_opens && limit > 0 {
        let latest = timetable
            .at_or_before(window_opens - 1)
            .filter(|latest| *latest >= due)
            .unwrap_or(due);
        fires.push(latest);
        next = timetable.after(latest);
    }
    while let Some(t) = next {
        if t > now || fires.len() >= limit {
            break;
        }
        fires.push(t);
        next = timetable.after(t);
    }
    Plan { fires, next }
}

/// The idempotency key a run's job carries (and its target receives): the
/// schedule and the due time, so a target can tell a repeated delivery of a run
/// from the next run.
pub fn run_key(schedule_id: &str, due: i64) -> String {
    let time = Utc
        .timestamp_millis_opt(due)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| due.to_string());
    format!("{schedule_id}/{time}")
}

/// The idempotency key of a run triggered by hand: it has no due time, and two
/// triggers in one millisecond are two runs.
pub fn manual_run_key(schedule_id: &str, job_id: &str) -> String {
    format!("{schedule_id}/manual/{job_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .expect("a valid time")
            .timestamp_millis()
    }

    fn utc(ms: i64) -> String {
        Utc.timestamp_millis_opt(ms)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    fn cron(expression: &str, zone: &str) -> Timetable {
        Timetable {
            timing: Timing::Cron {
                cron: Box::new(parse_cron(expression).expect("a valid expression")),
                zone: parse_zone(zone).expect("a valid zone"),
            },
            start: None,
            end: None,
        }
    }

    fn every(every_ms: i64, anchor: i64) -> Timetable {
        Timetable {
            timing: Timing::Interval { every_ms, anchor },
            start: None,
            end: None,
        }
    }

    #[test]
    fn a_five_field_cron_fires_on_minutes_and_a_six_field_one_on_seconds() {
        let t = ms("2026-11-23T22:14:51.300Z");
        let minutes = cron("*/15 * * * *", "");
        assert_eq!(
            minutes
                .upcoming(t, 3)
                .into_iter()
                .map(utc)
                .collect::<Vec<_>>(),
            [
                "2026-11-23T22:15:00Z",
                "2026-11-23T22:30:00Z",
                "2026-11-23T22:45:00Z"
            ]
        );
        let seconds = cron("*/2 * * * * *", "UTC");
        assert_eq!(
            seconds
                .upcoming(t, 3)
                .into_iter()
                .map(utc)
                .collect::<Vec<_>>(),
            [
                "2026-11-23T22:14:52Z",
                "2026-11-23T22:14:54Z",
                "2026-11-23T22:14:56Z"
            ]
        );
        // A due time exactly at `t` counts as at-or-after, not as after.
        let due = ms("2026-11-23T22:15:00Z");
        assert_eq!(minutes.at_or_after(due), Some(due));
        assert_eq!(minutes.after(due), Some(ms("2026-11-23T22:30:00Z")));
        assert_eq!(
            minutes.at_or_before(ms("2026-11-23T22:29:59.999Z")),
            Some(due)
        );
    }

    #[test]
    fn cron_is_read_on_the_wall_clock_of_its_zone() {
        let nine = cron("0 9 * * *", "America/New_York");
        // New York is UTC-5 in winter.
        assert_eq!(
            nine.at_or_after(ms("2026-11-23T15:00:00Z")).map(utc),
            Some("2026-11-24T14:00:00Z".into())
        );
        // Across the change to summer time (2027-03-14), 09:00 moves to 13:00 UTC.
        assert_eq!(
            nine.upcoming(ms("2027-03-13T00:00:00Z"), 2)
                .into_iter()
                .map(utc)
                .collect::<Vec<_>>(),
            ["2027-03-13T14:00:00Z", "2027-03-14T13:00:00Z"]
        );
    }

    #[test]
    fn daylight_saving_gaps_and_repeats_fire_once() {
        // 02:30 does not exist in New York on 2027-03-14: that day's run comes at
        // the first instant after the gap (03:00 EDT, 07:00 UTC), once.
        let half_past_two = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            half_past_two
                .upcoming(ms("2027-03-13T12:00:00Z"), 3)
                .into_iter()
                .map(utc)
                .collect::<Vec<_>>(),
            [
                "2027-03-14T07:00:00Z",
                "2027-03-15T06:30:00Z",
                "2027-03-16T06:30:00Z"
            ]
        );
        // 01:30 happens twice on 2026-11-01: a daily run fires once.
        let half_past_one = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            half_past_one
                .upcoming(ms("2026-10-31T12:00:00Z"), 3)
                .into_iter()
                .map(utc)
                .collect::<Vec<_>>(),
            [
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
                "2026-11-03T06:30:00Z"
            ]
        );
    }

    #[test]
    fn an_expression_read_again_reads_the_same_and_a_bad_one_stays_refused() {
        for _ in 0..2 {
            let cron = parse_cron("*/7 3 * * 1-5").unwrap();
            assert_eq!(
                format!("{cron:?}"),
                format!("{:?}", parse_cron("*/7 3 * * 1-5").unwrap())
            );
            assert!(parse_cron("*/7 3 * * 1-8").is_err());
        }
        // Past what is kept, expressions are read afresh and still read right.
        for n in 0..PARSED_KEPT + 10 {
            let expression = format!("{} {} {} * *", n % 60, n / 60 % 24, 1 + n / 1440);
            assert!(parse_cron(&expression).is_ok(), "{expression}");
        }
        assert!(PARSED.lock().unwrap().len() <= PARSED_KEPT);
        assert!(parse_cron("*/7 3 * * 1-5").is_ok());
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_and_a_cron_that_never_matches_has_no_time() {
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("* * * *").is_err());
        assert!(parse_cron("").is_err());
        assert!(parse_cron("@daily").is_ok());
        // A year field is not part of the contract: seven fields are refused, and
        // the refusal says what is expected.
        let seven = parse_cron("0 0 12 * * * 2027").unwrap_err();
        assert!(seven.contains("expected five fields"), "{seven}");
        assert!(parse_cron("0 0 12 * * *").is_ok());
        assert!(parse_zone("Mars/Olympus").is_err());
        assert_eq!(parse_zone("").unwrap(), Tz::UTC);
        let february_30 = cron("0 0 30 2 *", "");
        assert_eq!(february_30.at_or_after(ms("2026-11-23T00:00:00Z")), None);
    }

    #[test]
    fn an_interval_counts_from_its_anchor() {
        let anchor = ms("2026-11-23T22:00:00Z");
        let tt = every(60_000, anchor);
        assert_eq!(tt.at_or_after(anchor - 5), Some(anchor));
        assert_eq!(tt.at_or_after(anchor), Some(anchor));
        assert_eq!(tt.at_or_after(anchor + 1), Some(anchor + 60_000));
        assert_eq!(tt.after(anchor + 60_000), Some(anchor + 120_000));
        assert_eq!(tt.at_or_before(anchor + 119_999), Some(anchor + 60_000));
        assert_eq!(tt.at_or_before(anchor - 1), None);
    }

    #[test]
    fn start_and_end_bound_every_timing() {
        let anchor = ms("2026-11-23T22:00:00Z");
        let tt = Timetable {
            start: Some(anchor + 90_000),
            end: Some(anchor + 240_000),
            ..every(60_000, anchor)
        };
        assert_eq!(
            tt.upcoming(anchor, 10),
            [anchor + 120_000, anchor + 180_000, anchor + 240_000]
        );
        assert_eq!(tt.at_or_before(anchor + 100_000), None);
        assert_eq!(tt.at_or_before(anchor + 999_999), Some(anchor + 240_000));
        let once = Timetable {
            timing: Timing::Once { at: anchor },
            start: None,
            end: None,
        };
        assert_eq!(once.upcoming(anchor - 1, 5), [anchor]);
        assert_eq!(once.after(anchor), None);
    }

    #[test]
    fn missed_runs_within_the_window_fire_each_and_older_ones_fold_into_one() {
        let anchor = ms("2026-11-23T22:00:00Z");
        let tt = every(1000, anchor);
        // On time: one run, the next one second later.
        assert_eq!(
            plan(&tt, anchor, anchor + 3, 60_000, 100),
            Plan {
                fires: vec![anchor],
                next: Some(anchor + 1000)
            }
        );
        // Down for 10 s with a 3 s window: the 7 s missed before the window fold
        // into one run (for the latest of them), the 3 s inside it fire each.
        let now = anchor + 10_000;
        assert_eq!(
            plan(&tt, anchor, now, 3000, 100),
            Plan {
                fires: vec![
                    anchor + 6000,
                    anchor + 7000,
                    anchor + 8000,
                    anchor + 9000,
                    now
                ],
                next: Some(now + 1000)
            }
        );
        // A window of 0: everything missed folds into one run; a time due right
        // now is not missed.
        assert_eq!(plan(&tt, anchor, now, 0, 100).fires, [now - 1000, now]);
        assert_eq!(plan(&tt, anchor, now + 1, 0, 100).fires, [now]);
        // The limit leaves the rest due for later.
        assert_eq!(
            plan(&tt, anchor, now, 60_000, 4),
            Plan {
                fires: vec![anchor, anchor + 1000, anchor + 2000, anchor + 3000],
                next: Some(anchor + 4000)
            }
        );
        // A one-shot fires once and is done.
        let once = Timetable {
            timing: Timing::Once { at: anchor },
            start: None,
            end: None,
        };
        assert_eq!(
            plan(&once, anchor, now, 0, 100),
            Plan {
                fires: vec![anchor],
                next: None
            }
        );
    }

    #[test]
    fn a_run_key_names_the_schedule_and_its_due_time() {
        assert_eq!(
            run_key("nightly", ms("2026-11-23T22:00:05Z")),
            "nightly/2026-11-23T22:00:05Z"
        );
        assert_eq!(
            run_key("fast", ms("2026-11-23T22:00:05.250Z")),
            "fast/2026-11-23T22:00:05.250Z"
        );
    }
}
