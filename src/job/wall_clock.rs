//! Cron on a wall clock: the one rule by which the wall-clock times a cron expression
//! matches in an IANA zone become instants.
//!
//! Each matching wall-clock time fires once, at the first instant the zone's clock
//! reaches it:
//! - a wall time that occurs once fires then;
//! - one the clocks skip (a gap, when they go forward) fires at the first instant
//!   after the gap;
//! - one the clocks repeat (when they go back) fires at its first occurrence;
//! - wall times that come to the same instant (several in one gap, or the end of a gap
//!   and the wall time right after it) are one due time.
//!
//! The search runs on the wall clock itself: the expression is matched against
//! wall-clock times (as if the zone were UTC), and each match is mapped to its instant
//! by the rule. Nothing depends on how a cron library treats transitions, which is
//! where a schedule firing several times an hour used to lose the run in a skipped
//! hour and run the repeated hour twice.

use chrono::{LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Most matches a search may pass over before it gives up. Matches are skipped only
/// inside a repeated stretch of wall time (an hour, rarely more): a cron that fires
/// every second skips 3,600 there.
const MOST_SKIPPED: usize = 200_000;

/// How far back the search for a past due time goes: past the range of any zone.
const LOOK_BACK_SECS: i64 = 400 * 366 * 86_400;

/// The wall-clock time at instant `secs` (seconds since the Unix epoch).
pub fn wall(zone: Tz, secs: i64) -> Option<NaiveDateTime> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .map(|t| t.with_timezone(&zone).naive_local())
}

/// The instant (seconds) at which wall-clock time `w` fires in `zone`, by the rule.
pub fn fire_instant(zone: Tz, w: NaiveDateTime) -> Option<i64> {
    match zone.from_local_datetime(&w) {
        LocalResult::Single(t) => Some(t.timestamp()),
        LocalResult::Ambiguous(a, b) => Some(a.timestamp().min(b.timestamp())),
        LocalResult::None => first_reaching(zone, w),
    }
}

/// The first instant whose wall time is at or past `w`: for a `w` in a gap, the
/// instant the gap ends.
fn first_reaching(zone: Tz, w: NaiveDateTime) -> Option<i64> {
    // Offsets lie between -14 and +14 hours and a gap lasts at most a day, so the
    // end of `w`'s gap lies within this span of `w` read as UTC.
    let as_utc = w.and_utc().timestamp();
    let (from, until) = (as_utc - 15 * 3600, as_utc + 39 * 3600);
    const STEP: i64 = 900;
    let mut before = from;
    let mut at = from;
    while at <= until {
        if wall(zone, at)? >= w {
            // The crossing lies in (before, at]: narrow it to the second.
            let (mut lo, mut hi) = (before, at);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if wall(zone, mid)? >= w {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return Some(hi);
        }
        before = at;
        at += STEP;
    }
    None
}

/// The first due time (seconds) at or after instant `secs`.
pub fn at_or_after(cron: &Cron, zone: Tz, secs: i64) -> Option<i64> {
    // A wall time before the wall time one second earlier was reached before that
    // second, so it cannot fire at or after `secs`: the search starts there.
    let start = wall(zone, secs - 1)?;
    let mut w = next_match(cron, start, true)?;
    for _ in 0..MOST_SKIPPED {
        let fire = fire_instant(zone, w)?;
        if fire >= secs {
            return Some(fire);
        }
        // Reached before `secs`: a repeated wall time, fired at its first occurrence.
        w = next_match(cron, w, false)?;
    }
    None
}

/// The latest due time (seconds) at or before instant `secs`. Found with
/// [`at_or_after`], which never decreases as its start moves on, so the two cannot
/// disagree.
pub fn at_or_before(cron: &Cron, zone: Tz, secs: i64) -> Option<i64> {
    let due_by = |from: i64| at_or_after(cron, zone, from).filter(|due| *due <= secs);
    // Widen the window back from `secs` until a due time falls in it...
    let mut back = 1;
    while due_by(secs - back).is_none() {
        if back > LOOK_BACK_SECS {
            return None;
        }
        back *= 2;
    }
    // ...then find the latest start whose first due time is still in it.
    let (mut lo, mut hi) = (secs - back, secs + 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if due_by(mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    due_by(lo)
}

/// The first wall-clock time at (when `inclusive`) or after `w` that `cron` matches.
fn next_match(cron: &Cron, w: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
    cron.find_next_occurrence(&w.and_utc(), inclusive)
        .ok()
        .map(|t| t.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::schedule::parse_cron;
    use chrono::{DateTime, SecondsFormat};

    fn secs(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("a valid time")
            .timestamp()
    }

    fn utc(secs: i64) -> String {
        Utc.timestamp_opt(secs, 0)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// Every due time from `from` to `until`, by repeated [`at_or_after`].
    fn fires(expression: &str, zone: &str, from: &str, until: &str) -> Vec<String> {
        let cron = parse_cron(expression).unwrap();
        let zone: Tz = zone.parse().unwrap();
        let until = secs(until);
        let mut out = Vec::new();
        let mut next = at_or_after(&cron, zone, secs(from));
        while let Some(due) = next.filter(|d| *d <= until) {
            out.push(utc(due));
            next = at_or_after(&cron, zone, due + 1);
        }
        out
    }

    #[test]
    fn hourly_in_new_york_fires_23_times_the_day_clocks_go_forward_and_25_back() {
        // 2027-03-14: 02:00 EST becomes 03:00 EDT. The 02:00 run comes at 03:00 EDT,
        // the same instant as the 03:00 run: one run, 23 in the day.
        let spring = fires(
            "0 * * * *",
            "America/New_York",
            "2027-03-14T05:00:00Z",
            "2027-03-15T03:59:59Z",
        );
        assert_eq!(spring.len(), 23, "{spring:?}");
        assert_eq!(
            spring[1..3],
            ["2027-03-14T06:00:00Z", "2027-03-14T07:00:00Z"]
        );
        // 2026-11-01: 02:00 EDT becomes 01:00 EST. 01:00 fires once, at its first
        // occurrence; the day has 25 hours and 24 runs.
        let autumn = fires(
            "0 * * * *",
            "America/New_York",
            "2026-11-01T04:00:00Z",
            "2026-11-02T04:59:59Z",
        );
        assert_eq!(autumn.len(), 24, "{autumn:?}");
        assert_eq!(
            autumn[0..3],
            [
                "2026-11-01T04:00:00Z",
                "2026-11-01T05:00:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
    }

    #[test]
    fn every_twenty_minutes_across_both_transitions() {
        // Forward: 02:00, 02:20 and 02:40 do not exist; they fire once, at 03:00
        // EDT (07:00 UTC), with 03:00's own run.
        assert_eq!(
            fires(
                "*/20 * * * *",
                "America/New_York",
                "2027-03-14T06:40:00Z",
                "2027-03-14T07:20:00Z"
            ),
            [
                "2027-03-14T06:40:00Z",
                "2027-03-14T07:00:00Z",
                "2027-03-14T07:20:00Z"
            ]
        );
        // Back: 01:00, 01:20 and 01:40 fire once each, in EDT; the repeated hour in
        // EST fires nothing; 02:00 EST follows.
        assert_eq!(
            fires(
                "*/20 * * * *",
                "America/New_York",
                "2026-11-01T05:00:00Z",
                "2026-11-01T07:00:00Z"
            ),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:20:00Z",
                "2026-11-01T05:40:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
    }

    #[test]
    fn lord_howe_moves_thirty_minutes() {
        // 2026-10-04 02:00 +10:30 becomes 02:30 +11: 02:00 and 02:15 fire once at the
        // first instant after the gap (15:30 UTC); 02:30 is that same instant.
        assert_eq!(
            fires(
                "*/15 * * * *",
                "Australia/Lord_Howe",
                "2026-10-03T15:15:00Z",
                "2026-10-03T16:00:00Z"
            ),
            [
                "2026-10-03T15:15:00Z",
                "2026-10-03T15:30:00Z",
                "2026-10-03T15:45:00Z",
                "2026-10-03T16:00:00Z"
            ]
        );
        // 2027-04-04 02:00 +11 becomes 01:30 +10:30: 01:30 and 01:45 fire at their
        // first occurrence only.
        assert_eq!(
            fires(
                "*/15 * * * *",
                "Australia/Lord_Howe",
                "2027-04-03T14:15:00Z",
                "2027-04-03T15:45:00Z"
            ),
            [
                "2027-04-03T14:15:00Z",
                "2027-04-03T14:30:00Z",
                "2027-04-03T14:45:00Z",
                "2027-04-03T15:30:00Z",
                "2027-04-03T15:45:00Z"
            ]
        );
    }

    #[test]
    fn a_transition_at_midnight_moves_the_midnight_run_to_the_end_of_the_gap() {
        // America/Santiago, 2026-09-06: 00:00 -04 becomes 01:00 -03.
        assert_eq!(
            fires(
                "0 0 * * *",
                "America/Santiago",
                "2026-09-05T00:00:00Z",
                "2026-09-07T12:00:00Z"
            ),
            [
                "2026-09-05T04:00:00Z",
                "2026-09-06T04:00:00Z",
                "2026-09-07T03:00:00Z"
            ]
        );
    }

    #[test]
    fn looking_back_agrees_with_looking_forward() {
        let cron = parse_cron("*/20 * * * *").unwrap();
        let zone: Tz = "America/New_York".parse().unwrap();
        let from = secs("2026-11-01T04:00:00Z");
        let mut t = from;
        while t < from + 4 * 3600 {
            if let Some(before) = at_or_before(&cron, zone, t) {
                assert!(before <= t);
                let next = at_or_after(&cron, zone, before + 1).unwrap();
                assert!(
                    next > t,
                    "{} then {} around {}",
                    utc(before),
                    utc(next),
                    utc(t)
                );
            }
            t += 317;
        }
        let never = parse_cron("0 0 30 2 *").unwrap();
        assert_eq!(at_or_after(&never, zone, from), None);
        assert_eq!(at_or_before(&never, zone, from), None);
    }
}

/// The rule checked against an independent oracle: a brute-force walk over instants,
/// second by second, with the zone database's offsets, firing at each instant for
/// the wall-clock times the clock reaches there for the first time.
#[cfg(test)]
mod oracle {
    use super::*;
    use crate::job::schedule::parse_cron;
    use chrono::{DateTime, Offset};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};

    /// The zone's offset from UTC (seconds) at instant `s`, from the zone database.
    fn offset(zone: Tz, s: i64) -> i64 {
        let at = DateTime::from_timestamp(s, 0)
            .expect("in range")
            .naive_utc();
        i64::from(zone.offset_from_utc_datetime(&at).fix().local_minus_utc())
    }

    /// The instants in `(from, until]` where the offset changes, each with the offset
    /// from then on.
    fn transitions(zone: Tz, from: i64, until: i64) -> Vec<(i64, i64)> {
        const STEP: i64 = 3600;
        let mut out = Vec::new();
        let (mut s, mut off) = (from, offset(zone, from));
        while s < until {
            let next = (s + STEP).min(until);
            if offset(zone, next) == off {
                s = next;
                continue;
            }
            let (mut lo, mut hi) = (s, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(zone, mid) == off {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            off = offset(zone, hi);
            out.push((hi, off));
            s = hi;
        }
        out
    }

    /// Due times in `[from, until]`, by brute force. `resolution` is 1 for a cron
    /// with seconds, 60 for one without: the wall times it can match.
    fn brute_force(cron: &Cron, zone: Tz, from: i64, until: i64, resolution: i64) -> Vec<i64> {
        // Long enough before `from` to know the highest wall time reached by then.
        let lead = from - 30 * 3600;
        let changes = transitions(zone, lead, until);
        let mut off = offset(zone, lead);
        let mut next_change = 0;
        let mut high = lead - 1 + off;
        let mut fires = Vec::new();
        for s in lead..=until {
            while next_change < changes.len() && changes[next_change].0 <= s {
                off = changes[next_change].1;
                next_change += 1;
            }
            let w = s + off;
            if w <= high {
                continue;
            }
            if s >= from {
                let first =
                    high + 1 + (resolution - (high + 1).rem_euclid(resolution)) % resolution;
                let reached = (first..=w).step_by(resolution as usize).any(|t| {
                    let wall = DateTime::from_timestamp(t, 0).expect("in range");
                    cron.is_time_matching(&wall).unwrap_or(false)
                });
                if reached {
                    fires.push(s);
                }
            }
            high = w;
        }
        fires
    }

    /// Due times in `[from, until]`, as the service finds them.
    fn service(cron: &Cron, zone: Tz, from: i64, until: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut next = at_or_after(cron, zone, from);
        while let Some(due) = next.filter(|d| *d <= until) {
            out.push(due);
            next = at_or_after(cron, zone, due + 1);
        }
        out
    }

    fn field(options: Vec<BoxedStrategy<String>>) -> BoxedStrategy<String> {
        proptest::strategy::Union::new(options).boxed()
    }

    fn numbers(max: u32) -> BoxedStrategy<String> {
        field(vec![
            Just("*".to_string()).boxed(),
            (1..=max / 2).prop_map(|n| format!("*/{n}")).boxed(),
            (0..=max).prop_map(|n| n.to_string()).boxed(),
            (0..=max, 0..=max)
                .prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b)))
                .boxed(),
            (0..=max, 0..=max, 1..=max / 3)
                .prop_map(|(a, b, n)| format!("{}-{}/{n}", a.min(b), a.max(b)))
                .boxed(),
            prop::collection::btree_set(0..=max, 2..4)
                .prop_map(|s| s.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
                .boxed(),
        ])
    }

    /// Cron expressions: most fields loose enough to fire near a transition, with
    /// steps, ranges, lists, `L`, `W` and `#` among them.
    fn expression(seconds: bool) -> impl Strategy<Value = String> {
        let second = if seconds {
            numbers(59)
        } else {
            Just(String::new()).boxed()
        };
        let hour = field(vec![Just("*".to_string()).boxed(), numbers(23)]);
        let day = field(vec![
            Just("*".to_string()).boxed(),
            Just("*".to_string()).boxed(),
            Just("L".to_string()).boxed(),
            (1..=28u32).prop_map(|n| format!("{n}W")).boxed(),
            numbers(31)
                .prop_filter("no day 0", |d| !d.starts_with('0') && d != "*/0")
                .boxed(),
        ]);
        let month = field(vec![
            Just("*".to_string()).boxed(),
            Just("*".to_string()).boxed(),
        ]);
        let weekday = field(vec![
            Just("*".to_string()).boxed(),
            Just("*".to_string()).boxed(),
            (0..=6u32, 1..=5u32)
                .prop_map(|(d, k)| format!("{d}#{k}"))
                .boxed(),
            (0..=6u32).prop_map(|d| format!("{d}L")).boxed(),
            Just("1-5".to_string()).boxed(),
        ]);
        (second, numbers(59), hour, day, month, weekday).prop_map(|(s, m, h, d, mo, w)| {
            let five = format!("{m} {h} {d} {mo} {w}");
            if s.is_empty() {
                five
            } else {
                format!("{s} {five}")
            }
        })
    }

    /// The transitions of `zone` in `year`, if any.
    fn transitions_in(zone: Tz, year: i32) -> Vec<i64> {
        let start = chrono::NaiveDate::from_ymd_opt(year, 1, 1)
            .expect("a year")
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp();
        transitions(zone, start, start + 366 * 86_400)
            .into_iter()
            .map(|(at, _)| at)
            .collect()
    }

    /// Compares the two over a window around `at`; an expression croner cannot
    /// read (a day range that never matches, say) is skipped.
    fn agree(zone: Tz, at: i64, expression: &str, half_window: i64) -> Result<bool, String> {
        let Ok(cron) = parse_cron(expression) else {
            return Ok(false);
        };
        let resolution = if expression.split_whitespace().count() == 6 {
            1
        } else {
            60
        };
        let (from, until) = (at - half_window, at + half_window);
        let expected = brute_force(&cron, zone, from, until, resolution);
        let found = service(&cron, zone, from, until);
        if expected != found {
            let utc = super::tests_support::utc;
            let at_odds = expected
                .iter()
                .zip(&found)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len().min(found.len()));
            let near = |v: &[i64]| {
                v.iter()
                    .skip(at_odds.saturating_sub(2))
                    .take(5)
                    .map(|s| utc(*s))
                    .collect::<Vec<_>>()
            };
            return Err(format!(
                "{expression:?} in {zone} around {}: from due time {at_odds} on, expected {:?} found {:?}",
                utc(at),
                near(&expected),
                near(&found)
            ));
        }
        Ok(true)
    }

    #[test]
    fn every_zone_with_a_transition_follows_the_rule_for_minute_crons() {
        let mut runner = TestRunner::deterministic();
        let strategy = expression(false);
        let (mut zones, mut compared) = (0, 0);
        for zone in chrono_tz::TZ_VARIANTS {
            // A year with transitions, seeded per zone.
            let pick = (zone.name().len() as i32 * 7919) % 58;
            let Some((year, changes)) = (0..58)
                .map(|i| 1980 + (pick + i) % 58)
                .map(|year| (year, transitions_in(zone, year)))
                .find(|(_, changes)| !changes.is_empty())
            else {
                continue;
            };
            zones += 1;
            for at in changes.iter().take(2) {
                let expression = strategy.new_tree(&mut runner).expect("a tree").current();
                if agree(zone, *at, &expression, 6 * 3600)
                    .unwrap_or_else(|e| panic!("{e} (year {year})"))
                {
                    compared += 1;
                }
            }
        }
        eprintln!("{zones} zones with transitions, {compared} transitions compared");
        assert!(zones > 300, "only {zones} zones had transitions");
        assert!(compared > zones, "only {compared} comparisons");
    }

    #[test]
    fn second_crons_follow_the_rule_around_random_transitions() {
        let zones: Vec<Tz> = chrono_tz::TZ_VARIANTS.to_vec();
        let mut runner = TestRunner::new(Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        });
        let case = (
            0..zones.len(),
            1980..2038i32,
            any::<prop::sample::Index>(),
            expression(true),
        );
        runner
            .run(&case, |(z, year, pick, expression)| {
                let zone = zones[z];
                let changes = transitions_in(zone, year);
                if changes.is_empty() {
                    return Ok(());
                }
                agree(zone, *pick.get(&changes), &expression, 5400)
                    .map(|_| ())
                    .map_err(TestCaseError::fail)
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }

    use proptest::test_runner::TestCaseError;
}

#[cfg(test)]
mod tests_support {
    use chrono::{SecondsFormat, TimeZone, Utc};

    pub fn utc(secs: i64) -> String {
        Utc.timestamp_opt(secs, 0)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}
