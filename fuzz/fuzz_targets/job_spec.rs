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
    // With keys, so secret headers are sealed (and read back masked) too.
    let mut config = Config::with_db_url("sqlite::memory:");
    config.secret_keys = Some(
        jobqueue::secret::Keyring::parse("k=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .expect("the fuzz key"),
    );
    let limits = Limits::from(&config);
    let mut v = Violations::default();
    let Some(row) = convert::new_job(
        "default",
        Some(spec),
        "job",
        &limits,
        "j_x".into(),
        None,
        0,
        &mut v,
    ) else {
        assert!(!v.is_empty(), "a refused job says why");
        return;
    };
    if v.is_empty() {
        let stored = row.job.headers.clone();
        let shown = convert::job(row.job);
        let request = shown.request.expect("an accepted job has its call");
        // Every secret header comes back by name only, and opens for its job.
        let opened = jobqueue::secret::headers::opened(
            &stored,
            limits.keyring.as_ref(),
            jobqueue::secret::Row::job("j_x"),
        )
        .expect("a sealed header opens for its own job");
        for name in opened.values.keys().filter(|name| opened.is_secret(name)) {
            assert!(request.secret_headers.contains(name) && !request.headers.contains_key(name));
        }
    }
});
