//! The pod as a process: the chart's default (SQLite) rendering, run the way the kubelet
//! runs it. The container's command and arguments (the image's ENTRYPOINT and CMD from
//! the Dockerfile where the Deployment sets none) and its environment (the image's ENV,
//! then `envFrom`, then `env`, resolved from the rendered ConfigMap) start the built
//! binary with nothing else; only the data volume becomes a temp folder and the
//! listening ports free loopback ports. The probes' own ports, service names and
//! timings are then held to what the rendering promises:
//!
//! - the startup probe passes within its failureThreshold x periodSeconds, then the
//!   pod is ready and alive, and a job to a loopback target SUCCEEDS;
//! - with the data folder gone the readiness probe fails while liveness still passes
//!   (an outage restarts nothing), and readiness passes again once the folder is back;
//! - on SIGTERM readiness fails while the listener still answers, the listener stays
//!   open for the rendered shutdown delay, and the process exits 0 within the rendered
//!   terminationGracePeriodSeconds, before the kubelet would kill it.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto;
use serde_json::Value;
use tonic_health::pb::health_check_response::ServingStatus;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Whether a tool of the chart's checks can run. Missing locally, the test says so and
/// is skipped; with `CI=true`, missing is a failure (as `common::tool_available`).
fn chart_tool_available(check: &mut Command, what: &str) -> bool {
    let ok = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "{what} is missing and CI=true: helm/test.sh installs it"
        );
        eprintln!("SKIPPED: {what} is not installed here (helm/test.sh installs it)");
    }
    ok
}

/// The chart rendered with its default values, as JSON documents; None when helm or
/// PyYAML is missing here.
fn render_default_chart() -> Option<Vec<Value>> {
    // helm/test.sh puts helm into .tools/bin.
    let installed = Path::new(REPO).join(".tools/bin/helm");
    let helm = match installed.is_file() {
        true => installed.into_os_string(),
        false => "helm".into(),
    };
    if !chart_tool_available(Command::new(&helm).arg("version"), "helm") {
        return None;
    }
    let yaml_to_json = "import sys, yaml, json; \
        json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)";
    if !chart_tool_available(
        Command::new("python3").args(["-c", "import yaml"]),
        "PyYAML",
    ) {
        return None;
    }
    // No state kept between runs: no repositories, no plugins (as helm/test.sh).
    let home = tempfile::tempdir().unwrap();
    let rendered = Command::new(&helm)
        .args(["template", "jq", "helm/jobqueue", "--namespace", "jobs"])
        // The test's target is on loopback: allowed by the chart's own setting.
        .args(["--set", "settings.outboundAllow=127.0.0.1"])
        .current_dir(REPO)
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm template");
    assert!(
        rendered.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut python = Command::new("python3")
        .args(["-c", yaml_to_json])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(&rendered.stdout)
        .unwrap();
    let json = python.wait_with_output().unwrap();
    assert!(
        json.status.success(),
        "the rendered chart is not YAML: {}",
        String::from_utf8_lossy(&json.stderr)
    );
    Some(serde_json::from_slice(&json.stdout).expect("JSON from python3"))
}

/// What the image built from the Dockerfile starts with: its final stage's
/// ENTRYPOINT, CMD and ENV, and where its COPY instructions put files.
struct Image {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    copied_to: Vec<String>,
}

impl Image {
    fn from_dockerfile() -> Image {
        let text = std::fs::read_to_string(Path::new(REPO).join("Dockerfile")).unwrap();
        // Instructions, with continued lines joined; comment lines are dropped even
        // inside a continuation, as Docker does.
        let mut instructions = Vec::new();
        let mut current = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => current.push_str(part),
                None => {
                    current.push_str(line);
                    instructions.push(std::mem::take(&mut current));
                }
            }
        }
        let split = |i: &String| {
            let (word, rest) = i.split_once(char::is_whitespace).unwrap_or((i, ""));
            (word.to_ascii_uppercase(), rest.trim().to_string())
        };
        // The image is the last stage.
        let last_from = instructions
            .iter()
            .rposition(|i| split(i).0 == "FROM")
            .expect("the Dockerfile has a FROM");
        // The runtime image has no shell, so only the exec (JSON) form can start.
        let exec_form = |word: &str, rest: &str| -> Vec<String> {
            serde_json::from_str(rest).unwrap_or_else(|_| {
                panic!("{word} {rest}: not the exec form a shell-less image needs")
            })
        };
        let mut image = Image {
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            copied_to: Vec::new(),
        };
        for (word, rest) in instructions[last_from..].iter().map(split) {
            match word.as_str() {
                "ENTRYPOINT" => image.entrypoint = exec_form(&word, &rest),
                "CMD" => image.cmd = exec_form(&word, &rest),
                "ENV" => {
                    for pair in rest.split_whitespace() {
                        let (name, value) = pair
                            .split_once('=')
                            .unwrap_or_else(|| panic!("ENV {pair}: expected NAME=VALUE"));
                        set(&mut image.env, name, value.trim_matches('"'));
                    }
                }
                "COPY" => image
                    .copied_to
                    .extend(rest.split_whitespace().last().map(String::from)),
                _ => {}
            }
        }
        image
    }
}

/// Sets `name` in an ordered environment, a later value replacing an earlier one.
fn set(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    match env.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => env.push((name.to_string(), value.to_string())),
    }
}

/// A gRPC probe of the container, with Kubernetes' defaults for what it leaves out.
struct Probe {
    /// `readinessProbe` and so on.
    key: String,
    port: u64,
    service: String,
    period: Duration,
    timeout: Duration,
    failure_threshold: u32,
}

impl Probe {
    fn from(container: &Value, key: &str) -> Probe {
        let probe = &container[key];
        let grpc = &probe["grpc"];
        assert!(grpc.is_object(), "{key} is not a gRPC probe: {probe}");
        let seconds = |field: &str, default: u64| {
            Duration::from_secs(probe[field].as_u64().unwrap_or(default))
        };
        Probe {
            key: key.to_string(),
            port: grpc["port"]
                .as_u64()
                .unwrap_or_else(|| panic!("{key}.grpc.port must be a number: {grpc}")),
            service: grpc["service"].as_str().unwrap_or("").to_string(),
            period: seconds("periodSeconds", 10),
            timeout: seconds("timeoutSeconds", 1),
            failure_threshold: probe["failureThreshold"].as_u64().unwrap_or(3) as u32,
        }
    }

    /// The probe as messages name it.
    fn name(&self) -> String {
        format!("{} (service {:?})", self.key, self.service)
    }

    /// How long the probe may keep failing before the kubelet acts on it.
    fn window(&self) -> Duration {
        self.period * self.failure_threshold
    }
}

/// The one pod of the default rendering, as the kubelet would start it.
struct PodSpec {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// Where the data volume is mounted (JOBQUEUE_DB_URL points inside it).
    data_mount: String,
    startup: Probe,
    liveness: Probe,
    readiness: Probe,
    termination_grace: Duration,
}

fn manifests_of<'a>(manifests: &'a [Value], kind: &str) -> Vec<&'a Value> {
    manifests.iter().filter(|m| m["kind"] == kind).collect()
}

fn config_map<'a>(manifests: &'a [Value], name: &str) -> Option<&'a Value> {
    manifests_of(manifests, "ConfigMap")
        .into_iter()
        .find(|m| m["metadata"]["name"] == name)
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value.as_array().map(|items| {
        items
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    })
}

impl PodSpec {
    fn from(manifests: &[Value], image: &Image) -> PodSpec {
        let deployments = manifests_of(manifests, "Deployment");
        assert_eq!(deployments.len(), 1, "SQLite renders one Deployment");
        let pod = &deployments[0]["spec"]["template"]["spec"];
        assert!(
            pod["initContainers"].is_null(),
            "an init container would run before the service; this test does not run it"
        );
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "the pod is one process");
        let container = &containers[0];

        // Kubernetes: `command` replaces ENTRYPOINT, `args` replaces CMD, and a
        // `command` without `args` drops the image's CMD.
        let argv = match (strings(&container["command"]), strings(&container["args"])) {
            (Some(command), Some(args)) => [command, args].concat(),
            (Some(command), None) => command,
            (None, Some(args)) => [image.entrypoint.clone(), args].concat(),
            (None, None) => [image.entrypoint.clone(), image.cmd.clone()].concat(),
        };
        let env = container_env(manifests, container, image);
        // $(VAR) references would be expanded by the kubelet; the chart uses none.
        for text in argv.iter().chain(env.iter().map(|(_, v)| v)) {
            assert!(!text.contains("$("), "unexpanded reference in {text}");
        }

        let data_mount = data_mount(manifests, pod, container, value_of(&env, "JOBQUEUE_DB_URL"));

        PodSpec {
            argv,
            env,
            data_mount,
            startup: Probe::from(container, "startupProbe"),
            liveness: Probe::from(container, "livenessProbe"),
            readiness: Probe::from(container, "readinessProbe"),
            termination_grace: Duration::from_secs(
                pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
            ),
        }
    }

    /// The environment on this host: the data folder at `data`, the listeners on
    /// the given loopback addresses, every other variable exactly as rendered.
    fn env_here(
        &self,
        data: &Path,
        listen: SocketAddr,
        metrics: SocketAddr,
    ) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (name, value) in env.iter_mut() {
            let here = match name.as_str() {
                "JOBQUEUE_LISTEN_ADDR" => listen,
                "JOBQUEUE_METRICS_ADDR" => metrics,
                "JOBQUEUE_DB_URL" => {
                    let mount = format!("sqlite://{}/", self.data_mount.trim_end_matches('/'));
                    let rest = value
                        .strip_prefix(&mount)
                        .expect("checked in PodSpec::from");
                    *value = format!("sqlite://{}/{rest}", data.display());
                    continue;
                }
                _ => continue,
            };
            // The kubelet probes (and Prometheus scrapes) the pod's own address.
            let rendered: SocketAddr = value
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value}: not host:port"));
            assert!(
                rendered.ip().is_unspecified(),
                "{name}={value}: a pod must listen on every interface, or no probe reaches it"
            );
            *value = here.to_string();
        }
        env
    }
}

/// The container's environment as the kubelet builds it: the image's ENV, then each
/// `envFrom` source, then `env`, a later value replacing an earlier one.
fn container_env(manifests: &[Value], container: &Value, image: &Image) -> Vec<(String, String)> {
    let mut env = image.env.clone();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let reference = &source["configMapRef"];
        let name = reference["name"]
            .as_str()
            .unwrap_or_else(|| panic!("only configMapRef envFrom is resolved: {source}"));
        let prefix = source["prefix"].as_str().unwrap_or("");
        match config_map(manifests, name) {
            Some(map) => {
                for (key, value) in map["data"].as_object().into_iter().flatten() {
                    let value = value.as_str().expect("ConfigMap data are strings");
                    set(&mut env, &format!("{prefix}{key}"), value);
                }
            }
            None if reference["optional"] == true => {}
            None => panic!("envFrom names ConfigMap {name}, which the chart does not render"),
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().expect("env name");
        if let Some(value) = var["value"].as_str() {
            set(&mut env, name, value);
            continue;
        }
        let reference = &var["valueFrom"]["configMapKeyRef"];
        let (map, key) = match (reference["name"].as_str(), reference["key"].as_str()) {
            (Some(map), Some(key)) => (map, key),
            _ => panic!("{name}: only values and configMapKeyRef are resolved: {var}"),
        };
        match config_map(manifests, map).and_then(|m| m["data"][key].as_str()) {
            Some(value) => set(&mut env, name, value),
            None if reference["optional"] == true => {}
            None => panic!("{name}: ConfigMap {map} renders no key {key}"),
        }
    }
    env
}

/// Where the volume holding the SQLite file at `db_url` is mounted. The root file
/// system is read-only, so the database must be on a mounted volume, and one that
/// outlives the pod: a claim the chart renders.
fn data_mount(manifests: &[Value], pod: &Value, container: &Value, db_url: &str) -> String {
    let db_file = db_url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .unwrap_or_else(|| panic!("the default is SQLite, not {db_url}"));
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    let data = mounts
        .iter()
        .find(|m| {
            let path = m["mountPath"].as_str().unwrap_or("");
            db_file.starts_with(&format!("{}/", path.trim_end_matches('/')))
        })
        .unwrap_or_else(|| panic!("{db_file} is on no mounted volume: {mounts:?}"));
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == data["name"])
        .expect("the mounted volume is declared");
    let claim = volume["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap_or_else(|| panic!("the database volume is not a claim: {volume}"));
    assert!(
        manifests_of(manifests, "PersistentVolumeClaim")
            .iter()
            .any(|c| c["metadata"]["name"] == claim),
        "the chart renders no claim {claim}"
    );

    data["mountPath"].as_str().unwrap().to_string()
}

fn value_of<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the pod sets no {name}"))
}

fn port_of(env: &[(String, String)], name: &str) -> u64 {
    let addr: SocketAddr = value_of(env, name).parse().expect("host:port");
    u64::from(addr.port())
}

/// Starts the binary with exactly `argv[1..]` and `env` (plus PATH), in `cwd`.
fn start_pod(argv: &[String], env: &[(String, String)], cwd: &Path, addr: SocketAddr) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(n, v)| (n, v)))
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jobqueue");
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("{line}");
        }
    });
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            lines.lock().unwrap().push(line);
        }
    });
    Process { child, addr, log }
}

/// One probe as the kubelet makes it: a new connection, the probe's service, an answer
/// within its timeout. None when nothing answered in time.
async fn probe(addr: SocketAddr, probe: &Probe) -> Option<ServingStatus> {
    let ask = health_status(addr, &probe.service);
    tokio::time::timeout(probe.timeout, ask)
        .await
        .ok()
        .flatten()
}

/// Probes until `watched` answers `expected`, failing when `within` passes or the
/// process exits; with `alive`, every round that probe must answer SERVING.
async fn wait_for(
    pod: &mut Process,
    watched: &Probe,
    expected: ServingStatus,
    within: Duration,
    alive: Option<&Probe>,
) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(exit) = pod.child.try_wait().unwrap() {
            panic!(
                "the process exited ({exit}) while {} was awaited",
                watched.name()
            );
        }
        let now = probe(pod.addr, watched).await;
        if now == Some(expected) {
            return;
        }
        if let Some(alive) = alive {
            assert_eq!(
                probe(pod.addr, alive).await,
                Some(ServingStatus::Serving),
                "{} failed while {} answered {now:?}",
                alive.name(),
                watched.name()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not answer {expected:?} within {within:?}; last {now:?}",
            watched.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits a GET of `url` and waits until it SUCCEEDED.
async fn job_succeeds(client: &mut Client, url: String) {
    let id = submit(client, get(url)).await;
    wait_status(
        client,
        &id,
        proto::JobStatus::Succeeded,
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_pod_serves_follows_its_database_and_stops_within_its_grace() {
    let Some(manifests) = render_default_chart() else {
        return;
    };
    let image = Image::from_dockerfile();
    let spec = PodSpec::from(&manifests, &image);
    let shutdown_delay = check_what_the_kubelet_runs(&spec, &image);

    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let listen = free_port();
    let metrics = free_port();
    let env = spec.env_here(&data, listen, metrics);
    let shown: BTreeMap<_, _> = env.iter().cloned().collect();
    eprintln!("environment: {shown:#?}");
    // The working directory is the temp folder, so nothing can land in the repository.
    let mut pod = start_pod(&spec.argv, &env, root.path(), listen);
    let started = Instant::now();

    // Started, then ready and alive.
    wait_for(
        &mut pod,
        &spec.startup,
        ServingStatus::Serving,
        spec.startup.window(),
        None,
    )
    .await;
    wait_for(
        &mut pod,
        &spec.readiness,
        ServingStatus::Serving,
        spec.startup.window(),
        Some(&spec.liveness),
    )
    .await;
    eprintln!("ready after {:?}", started.elapsed());

    // It runs a job, and its metrics are on the rendered metrics address.
    let target = Target::start().await.unwrap();
    let mut client = connect(listen).await;
    job_succeeds(&mut client, target.url("/from-the-pod")).await;
    assert_eq!(target.received_on("/from-the-pod").len(), 1);
    let page = metrics_page(metrics).await;
    let submitted: f64 = page
        .lines()
        .filter(|l| l.starts_with("jobqueue_jobs_submitted_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(submitted, 1.0, "metrics page:\n{page}");

    lose_the_data_folder_and_get_it_back(&mut pod, &spec, &data).await;
    job_succeeds(&mut client, target.url("/after-the-outage")).await;

    stop_as_the_kubelet_does(&mut pod, &spec, shutdown_delay, &mut client, &target).await;
}

/// What the kubelet would run, held to the image and the service: the entrypoint is
/// the binary the Dockerfile copies in, run as `serve`, and the probes ask the gRPC
/// listener under the names the service reports. Returns the shutdown delay.
fn check_what_the_kubelet_runs(spec: &PodSpec, image: &Image) -> Duration {
    assert!(
        image.copied_to.contains(&spec.argv[0]),
        "{} is not where the Dockerfile puts a file ({:?})",
        spec.argv[0],
        image.copied_to
    );
    assert_eq!(spec.argv[1..], ["serve"], "argv {:?}", spec.argv);
    let grpc_port = port_of(&spec.env, "JOBQUEUE_LISTEN_ADDR");
    for probe in [&spec.startup, &spec.liveness, &spec.readiness] {
        assert_eq!(probe.port, grpc_port, "{} asks another port", probe.name());
    }
    assert_eq!(spec.startup.service, "liveness");
    assert_eq!(spec.liveness.service, "liveness");
    assert_eq!(spec.readiness.service, "readiness");
    let delay = humantime::parse_duration(value_of(&spec.env, "JOBQUEUE_SHUTDOWN_DELAY"))
        .expect("JOBQUEUE_SHUTDOWN_DELAY is a duration");
    eprintln!(
        "pod: argv {:?}; shutdown delay {delay:?}; terminationGracePeriodSeconds {:?}",
        spec.argv, spec.termination_grace
    );
    delay
}

/// The database stops answering (its folder is gone): not ready within the readiness
/// probe's window and alive throughout, then ready again once the folder is back.
async fn lose_the_data_folder_and_get_it_back(pod: &mut Process, spec: &PodSpec, data: &Path) {
    let away = data.with_file_name("data-away");
    std::fs::rename(data, &away).unwrap();
    wait_for(
        pod,
        &spec.readiness,
        ServingStatus::NotServing,
        spec.readiness.window(),
        Some(&spec.liveness),
    )
    .await;
    std::fs::rename(&away, data).unwrap();
    wait_for(
        pod,
        &spec.readiness,
        ServingStatus::Serving,
        spec.readiness.window(),
        Some(&spec.liveness),
    )
    .await;
}

/// SIGTERM: not ready while the listener still answers, calls served until the delay
/// ends, then exit 0 before terminationGracePeriodSeconds runs out.
async fn stop_as_the_kubelet_does(
    pod: &mut Process,
    spec: &PodSpec,
    delay: Duration,
    client: &mut Client,
    target: &Target,
) {
    let grace = spec.termination_grace;
    let asked = Instant::now();
    pod.sigterm();
    wait_for(
        pod,
        &spec.readiness,
        ServingStatus::NotServing,
        spec.readiness.window(),
        Some(&spec.liveness),
    )
    .await;
    let flipped = asked.elapsed();
    assert!(
        flipped < delay,
        "readiness turned NOT_SERVING only after {flipped:?}, past the {delay:?} delay"
    );
    let id = submit(client, get(target.url("/during-the-delay"))).await;
    assert_eq!(get_job(client, &id).await.id, id);
    while probe(pod.addr, &spec.liveness).await.is_some() {
        assert!(
            asked.elapsed() < grace,
            "still listening {grace:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed = asked.elapsed();
    assert!(
        closed >= delay,
        "the listener closed {closed:?} after SIGTERM, before the {delay:?} delay ended"
    );
    let exit = loop {
        if let Some(exit) = pod.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            asked.elapsed() < grace,
            "still running {grace:?} after SIGTERM: the kubelet would kill it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exited = asked.elapsed();
    assert!(exit.success(), "exit {exit}");
    eprintln!(
        "SIGTERM: not ready after {flipped:?}, listener closed after {closed:?}, \
         exited 0 after {exited:?} (terminationGracePeriodSeconds {grace:?})"
    );
}
