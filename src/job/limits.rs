//! Queue limits as arithmetic: the rate limiter's token bucket, and how a claim
//! shares free slots among queues.

use std::time::Duration;

/// A token bucket: it holds up to `burst` tokens and gains `per_second` of them each
/// second; each call started takes one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub per_second: f64,
    pub burst: f64,
}

impl Bucket {
    /// Tokens held at `now` (ms), having held `tokens` at `at`.
    pub fn refill(&self, tokens: f64, at: i64, now: i64) -> f64 {
        let gained = self.per_second * (now - at).max(0) as f64 / 1000.0;
        (tokens + gained).min(self.burst)
    }

    /// How long until the bucket holds a whole token, holding `tokens` now.
    pub fn until_next(&self, tokens: f64) -> Duration {
        if tokens >= 1.0 {
            return Duration::ZERO;
        }
        let ms = ((1.0 - tokens) / self.per_second * 1000.0).ceil();
        Duration::from_millis(ms.max(1.0) as u64)
    }
}

/// Shares `free` slots among queues that may take at most `caps[i]` each: every
/// queue gets an equal share, and what a capped queue cannot take goes to the
/// others. Slots that do not divide evenly go to the queues from `first` on, so a
/// caller rotating `first` spreads them over turns.
pub fn share(free: usize, caps: &[usize], first: usize) -> Vec<usize> {
    let n = caps.len();
    let mut given = vec![0; n];
    let mut left = free;
    loop {
        let open: Vec<usize> = (0..n)
            .map(|k| (first + k) % n.max(1))
            .filter(|&i| given[i] < caps[i])
            .collect();
        if open.is_empty() || left == 0 {
            return given;
        }
        let each = left / open.len();
        if each == 0 {
            // Fewer slots than queues: one each, in turn.
            for &i in open.iter().take(left) {
                given[i] += 1;
            }
            return given;
        }
        for &i in &open {
            let take = each.min(caps[i] - given[i]);
            given[i] += take;
            left -= take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_at_its_rate_up_to_its_burst() {
        let bucket = Bucket {
            per_second: 20.0,
            burst: 5.0,
        };
        assert_eq!(bucket.refill(0.0, 1_000, 1_100), 2.0);
        assert_eq!(bucket.refill(1.0, 1_000, 61_000), 5.0);
        // A clock that went back gains nothing.
        assert_eq!(bucket.refill(1.5, 2_000, 1_000), 1.5);
        assert_eq!(bucket.until_next(0.5), Duration::from_millis(25));
        assert_eq!(bucket.until_next(1.0), Duration::ZERO);
        let slow = Bucket {
            per_second: 0.5,
            burst: 1.0,
        };
        assert_eq!(slow.until_next(0.0), Duration::from_secs(2));
    }

    #[test]
    fn free_slots_are_shared_evenly_and_what_a_capped_queue_leaves_goes_on() {
        assert_eq!(share(12, &[100, 100, 100], 0), [4, 4, 4]);
        assert_eq!(share(12, &[1, 100, 100], 0), [1, 6, 5]);
        assert_eq!(share(10, &[3, 0, 100], 0), [3, 0, 7]);
        assert_eq!(share(2, &[100, 100, 100], 1), [0, 1, 1]);
        assert_eq!(share(5, &[1, 1], 0), [1, 1]);
        assert_eq!(share(0, &[4], 0), [0]);
        assert!(share(3, &[], 0).is_empty());
        let total: usize = share(256, &[7; 20], 3).iter().sum();
        assert_eq!(total, 140);
        let total: usize = share(256, &[usize::MAX; 20], 3).iter().sum();
        assert_eq!(total, 256);
    }
}
