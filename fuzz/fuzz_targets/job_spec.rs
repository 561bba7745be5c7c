//! Any bytes as a submitted job (a `JobSpec` as the wire carries it), checked and
//! converted as `SubmitJob` does: nothing panics, and a job that is accepted
//! reads back through the API's conversion.
//!
//!     cargo +nightly fuzz run job_spec fuzz/seeds/job_spec -- -max_total_time=60

#![no_main]

use jobqueue::api::Violations;
use jobqueue::api::convert::{self, Limits};
use jobqueue::config::Config;
use jobqueue::proto::JobSpec;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = JobSpec::decode(data) else {
        return;
    };
    let limits = Limits::from(&Config::with_db_url("sqlite::memory:"));
    let mut v = Violations::default();
    let Some(row) = convert::new_job("default", Some(spec), "job", &limits, "j_x".into(), 0, &mut v)
    else {
        assert!(!v.is_empty(), "a refused job says why");
        return;
    };
    if v.is_empty() {
        let shown = convert::job(row.job);
        assert!(shown.request.is_some(), "an accepted job has its call");
    }
});
