//! Human output: tables, local times with relative ages, status names.

use chrono::{DateTime, Local, TimeZone};

use crate::proto;

/// `2026-12-05 18:04:05 (3m ago)` in the local time zone; `-` when unset.
pub fn when(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = t else { return "-".into() };
    let Some(at) = Local
        .timestamp_opt(t.seconds, t.nanos.max(0) as u32)
        .single()
    else {
        return "-".into();
    };
    format!("{} ({})", at.format("%Y-%m-%d %H:%M:%S"), relative(at))
}

/// `3m ago`, `in 12s`, `now`.
pub fn relative(at: DateTime<Local>) -> String {
    let seconds = (at - Local::now()).num_seconds();
    if seconds == 0 {
        return "now".into();
    }
    let span = short_span(seconds.unsigned_abs());
    if seconds < 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// The largest unit or two: `45s`, `3m 20s`, `2h 5m`, `4d 3h`.
pub fn short_span(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A Duration as `1.25s`, `120ms`.
pub fn duration(d: Option<&prost_types::Duration>) -> String {
    let Some(d) = d else { return "-".into() };
    let ms = d.seconds as f64 * 1000.0 + f64::from(d.nanos) / 1e6;
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        short_span((ms / 1000.0) as u64)
    }
}

/// `succeeded`, `running`, ...
pub fn status(status: i32) -> String {
    proto::JobStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("JOB_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("status {status}"))
}

/// `connect`, `timeout`, ...; empty for none.
pub fn error_class(class: i32) -> String {
    match proto::ErrorClass::try_from(class) {
        Ok(proto::ErrorClass::Unspecified) => String::new(),
        Ok(c) => c
            .as_str_name()
            .trim_start_matches("ERROR_CLASS_")
            .to_lowercase(),
        Err(_) => format!("error class {class}"),
    }
}

/// Rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `label: value` lines, the labels aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    pairs
        .iter()
        .map(|(label, value)| format!("{:<width$} {value}", format!("{label}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_keep_the_two_largest_units() {
        assert_eq!(short_span(45), "45s");
        assert_eq!(short_span(180), "3m");
        assert_eq!(short_span(200), "3m 20s");
        assert_eq!(short_span(7500), "2h 5m");
        assert_eq!(short_span(4 * 86_400 + 3 * 3600 + 10), "4d 3h");
    }

    #[test]
    fn tables_align_every_column_but_the_last() {
        let rows = vec![
            vec!["j_1".to_string(), "succeeded".into(), "x".into()],
            vec!["j_22".to_string(), "queued".into(), "yy".into()],
        ];
        assert_eq!(
            table(&["ID", "STATUS", "URL"], &rows),
            "ID    STATUS     URL\nj_1   succeeded  x\nj_22  queued     yy"
        );
    }
}
