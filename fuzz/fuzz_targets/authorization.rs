//! Any `authorization` value, for any method, against a real key store: nothing
//! panics, and a call is admitted only with a key that is good (stored, secret
//! right, not expired, not revoked) and holds the method's scope.
//!
//!     cargo +nightly fuzz run authorization fuzz/seeds/authorization -- -max_total_time=60

#![no_main]

use std::sync::OnceLock;

use jobqueue::auth::layer::Gate;
use jobqueue::auth::{Needed, Scope, key, needed};
use jobqueue::config::Config;
use jobqueue::engine::{Engine, KeyChange};
use jobqueue::store::{Store, api_keys};
use libfuzzer_sys::fuzz_target;

/// Methods the first byte picks from: each needs a different scope, or none.
const PATHS: [&str; 6] = [
    "/jobqueue.v1.JobService/SubmitJob",
    "/jobqueue.v1.JobService/GetJob",
    "/jobqueue.v1.KeyService/CreateKey",
    "/jobqueue.v1.QueueService/PurgeQueue",
    "/grpc.health.v1.Health/Check",
    "/jobqueue.v1.JobService/NoSuchMethod",
];

/// The keys stored, fixed so the seeds in `fuzz/seeds/authorization` hold them:
/// a reader, an admin, one expired and one revoked.
const KEYS: [&str; 4] = [
    "jq_k01aaaaaaaaaaaaaaaaaaaaaaaa_1111111111111111111111111111111111111111111111111111111111111111",
    "jq_k01bbbbbbbbbbbbbbbbbbbbbbbb_2222222222222222222222222222222222222222222222222222222222222222",
    "jq_k01cccccccccccccccccccccccc_3333333333333333333333333333333333333333333333333333333333333333",
    "jq_k01dddddddddddddddddddddddd_4444444444444444444444444444444444444444444444444444444444444444",
];

struct World {
    runtime: tokio::runtime::Runtime,
    gate: Gate,
    /// Good keys, whole, with the scopes they hold.
    good: Vec<(String, Vec<Scope>)>,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

fn row(whole: &str, scopes: &str, expires_at: i64, revoked_at: Option<i64>) -> api_keys::Model {
    let presented = key::parse(whole).expect("a generated key");
    api_keys::Model {
        id: presented.id.to_string(),
        namespace: "default".into(),
        scopes: scopes.into(),
        secret_hash: key::hash(presented.secret),
        description: String::new(),
        source: "file".into(),
        created_at: 0,
        expires_at,
        revoked_at,
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/fuzz.db?mode=rwc", dir.path().display());
        let (engine, good) = runtime.block_on(async {
            let store = Store::connect(&url).await.unwrap();
            let config = Config::with_db_url(&url);
            let (engine, _writer) =
                Engine::start(store, &config, tokio_util::sync::CancellationToken::new())
                    .await
                    .unwrap();
            let far = i64::MAX / 2;
            let [reader, admin, expired, revoked] = KEYS.map(str::to_string);
            engine
                .change_keys(KeyChange::Save(vec![
                    row(&reader, "read", far, None),
                    row(&admin, "submit read manage queues.admin keys.admin", far, None),
                    row(&expired, "submit read", 1, None),
                    row(&revoked, "submit read", far, Some(1)),
                ]))
                .await
                .unwrap();
            let good = vec![
                (reader, vec![Scope::Read]),
                (
                    admin,
                    vec![
                        Scope::Submit,
                        Scope::Read,
                        Scope::Manage,
                        Scope::QueuesAdmin,
                        Scope::KeysAdmin,
                    ],
                ),
            ];
            (engine, good)
        });
        let gate = Gate::Keys(engine.store().clone());
        World {
            runtime,
            gate,
            good,
            _engine: engine,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let path = PATHS[pick as usize % PATHS.len()];
    let value = String::from_utf8_lossy(rest);
    let admitted = w.runtime.block_on(w.gate.check(path, Some(&value)));
    let Ok(caller) = admitted else {
        return;
    };
    match needed(path) {
        Needed::Nothing => {}
        Needed::Scope(scope) => {
            let presented = key::from_authorization(&value).expect("admitted with a key");
            let whole = format!("jq_{}_{}", presented.id, presented.secret);
            let holds = w
                .good
                .iter()
                .find(|(k, _)| *k == whole)
                .map(|(_, scopes)| scopes.contains(&scope));
            assert_eq!(holds, Some(true), "admitted {value:?} for {path}");
            assert_eq!(caller.key_id.as_deref(), Some(presented.id));
        }
        Needed::Unknown => panic!("admitted {value:?} for {path}, which no service has"),
    }
});
