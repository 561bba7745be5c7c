#!/usr/bin/env python3
"""Assertions on manifests rendered by `helm template` from helm/jobqueue.

    check_rendered.py split RENDERED OUTDIR
        Writes the built-in kinds to OUTDIR/builtin.yaml and each custom resource to
        OUTDIR/<kind>-<n>.yaml (one document each, for check-jsonschema).
    check_rendered.py check RENDERED --chart DIR [--values FILE]
        Checks what every rendering must hold, given the values it was rendered with.
    check_rendered.py rolls BEFORE AFTER ANNOTATION
        Checks that the pod-template annotation differs between two renderings.

Every failure names the resource and what was expected; exit status 1 if any.
"""

import argparse
import copy
import pathlib
import re
import sys

import yaml

CUSTOM_KINDS = {"ServiceMonitor"}
REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
USER = 65532
# The service's own drain of open calls after the shutdown grace (DRAIN_SLACK).
DRAIN_SLACK_SECONDS = 5


class Checker:
    def __init__(self, label):
        self.label = label
        self.failures = []

    def expect(self, ok, what):
        if not ok:
            self.failures.append(what)
        return ok

    def report(self):
        for f in self.failures:
            print(f"FAIL [{self.label}] {f}", file=sys.stderr)
        return 1 if self.failures else 0


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def name_of(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def merged(base, override):
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


def known_variables(repo):
    """Every JOBQUEUE_* variable the binary reads, from its clap `env =` attributes
    and the `from_env(...)` and `env::var(...)` calls."""
    pattern = re.compile(r'(?:env\s*=\s*|from_env\(\s*|env::var\(\s*)"(JOBQUEUE_[A-Z0-9_]+)"')
    found = set()
    for path in (repo / "src").rglob("*.rs"):
        found.update(pattern.findall(path.read_text()))
    return found


def seconds(value):
    m = re.fullmatch(r"([0-9]+)s", value or "")
    return int(m.group(1)) if m else None


def cmd_split(args):
    docs = load(args.rendered)
    out = pathlib.Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    builtin = [d for d in docs if d.get("kind") not in CUSTOM_KINDS]
    with open(out / "builtin.yaml", "w") as f:
        yaml.safe_dump_all(builtin, f, sort_keys=False)
    n = 0
    for d in docs:
        if d.get("kind") in CUSTOM_KINDS:
            n += 1
            with open(out / f"{d['kind'].lower()}-{n}.yaml", "w") as f:
                yaml.safe_dump(d, f, sort_keys=False)
    return 0


def cmd_rolls(args):
    c = Checker(f"{args.annotation} rolls the pods")
    before = {name_of(d): d for d in load(args.before) if d["kind"] == "Deployment"}
    after = {name_of(d): d for d in load(args.after) if d["kind"] == "Deployment"}
    c.expect(
        before and before.keys() == after.keys(), "both renderings must hold the same Deployments"
    )
    for name, d in before.items():
        a = d["spec"]["template"]["metadata"].get("annotations", {}).get(args.annotation)
        b = (
            after.get(name, {})
            .get("spec", {})
            .get("template", {})
            .get("metadata", {})
            .get("annotations", {})
            .get(args.annotation)
        )
        c.expect(a and b, f"{name}: pod template lacks the {args.annotation} annotation")
        c.expect(
            a != b,
            f"{name}: {args.annotation} is {a} before and after the change, so the pods would not roll",
        )
    return c.report()


def cmd_check(args):
    repo = pathlib.Path(args.chart).resolve().parent.parent
    values = yaml.safe_load(open(pathlib.Path(args.chart) / "values.yaml"))
    if args.values:
        values = merged(values, yaml.safe_load(open(args.values)) or {})
    c = Checker(args.values or "default values")
    docs = load(args.rendered)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    sqlite = values["database"]["mode"] == "sqlite"
    split = values["split"]["enabled"]
    metrics = values["metrics"]["enabled"]
    deployments = by_kind.get("Deployment", [])
    configmaps = by_kind.get("ConfigMap", [])
    services = by_kind.get("Service", [])

    # Labels on every resource.
    for d in docs:
        labels = d.get("metadata", {}).get("labels", {})
        for l in REQUIRED_LABELS:
            c.expect(l in labels, f"{name_of(d)}: missing label {l}")

    # Settings: one ConfigMap of JOBQUEUE_* variables, each one the binary reads.
    known = known_variables(repo)
    c.expect(len(configmaps) == 1, f"expected one ConfigMap, found {len(configmaps)}")
    config = configmaps[0].get("data", {}) if configmaps else {}
    for k in config:
        c.expect(
            k in known, f"ConfigMap sets {k}, which src/ does not read (known: {sorted(known)})"
        )
    c.expect(
        config.get("JOBQUEUE_LISTEN_ADDR") == f"0.0.0.0:{values['service']['port']}",
        f"JOBQUEUE_LISTEN_ADDR is {config.get('JOBQUEUE_LISTEN_ADDR')!r}, want 0.0.0.0:{values['service']['port']}",
    )
    if metrics:
        c.expect(
            config.get("JOBQUEUE_METRICS_ADDR") == f"0.0.0.0:{values['metrics']['port']}",
            f"JOBQUEUE_METRICS_ADDR is {config.get('JOBQUEUE_METRICS_ADDR')!r} with metrics on",
        )
    else:
        c.expect(
            "JOBQUEUE_METRICS_ADDR" not in config, "JOBQUEUE_METRICS_ADDR is set with metrics off"
        )
    delay = seconds(config.get("JOBQUEUE_SHUTDOWN_DELAY"))
    grace = seconds(config.get("JOBQUEUE_SHUTDOWN_GRACE"))
    c.expect(
        delay is not None,
        f"JOBQUEUE_SHUTDOWN_DELAY is {config.get('JOBQUEUE_SHUTDOWN_DELAY')!r}, want '<n>s'",
    )
    c.expect(
        grace is not None,
        f"JOBQUEUE_SHUTDOWN_GRACE is {config.get('JOBQUEUE_SHUTDOWN_GRACE')!r}, want '<n>s'",
    )
    c.expect(
        delay == values["settings"]["shutdownDelaySeconds"],
        "JOBQUEUE_SHUTDOWN_DELAY differs from settings.shutdownDelaySeconds",
    )
    c.expect(
        grace == values["settings"]["shutdownGraceSeconds"],
        "JOBQUEUE_SHUTDOWN_GRACE differs from settings.shutdownGraceSeconds",
    )
    # Namespaces' limits: the values' map, written as the binary parses it.
    wanted = values["settings"].get("namespaceLimits") or {}
    rendered = config.get("JOBQUEUE_NAMESPACE_LIMITS")
    if not wanted:
        c.expect(rendered is None, f"JOBQUEUE_NAMESPACE_LIMITS is {rendered!r} with no limits")
    else:
        parsed = {}
        for part in (rendered or "").split(";"):
            name, _, fields = part.partition(":")
            parsed[name] = {
                k: float(v) if k == "rate" else int(v)
                for k, v in (f.split("=") for f in fields.split(","))
            }
        c.expect(
            parsed == wanted,
            f"JOBQUEUE_NAMESPACE_LIMITS is {rendered!r}, which reads {parsed}, want {wanted}",
        )

    # The database URL is a secret on PostgreSQL: never in a ConfigMap, a plain env value
    # or anywhere else in plain text.
    secrets = by_kind.get("Secret", [])
    if sqlite:
        url = config.get("JOBQUEUE_DB_URL", "")
        c.expect(
            url.startswith("sqlite://"), f"SQLite: JOBQUEUE_DB_URL is {url!r}, want a sqlite:// URL"
        )
        c.expect(not secrets, "SQLite: a Secret is rendered, but there is nothing secret")
    else:
        c.expect("JOBQUEUE_DB_URL" not in config, "PostgreSQL: JOBQUEUE_DB_URL is in the ConfigMap")
        url = values["database"]["url"]
        if values["database"]["existingSecret"]:
            c.expect(not secrets, "existingSecret: the chart renders a Secret of its own")
        else:
            c.expect(
                len(secrets) == 1 and "JOBQUEUE_DB_URL" in secrets[0].get("data", {}),
                "PostgreSQL: no Secret holding JOBQUEUE_DB_URL",
            )
            m = re.match(r"postgres(?:ql)?://[^:/@]+:([^@]+)@", url)
            c.expect(m, f"test values: database.url {url!r} carries no password to look for")
            needles = [url] + ([m.group(1)] if m else [])
            for d in docs:
                text = yaml.safe_dump(d)
                for n in needles:
                    c.expect(
                        n not in text,
                        f"{name_of(d)}: the database URL or its password appears in plain text",
                    )

    # Deployments: count, replicas, strategy, and the pod spec.
    roles = ["api", "worker"] if split else ["all"]
    c.expect(
        len(deployments) == len(roles),
        f"expected {len(roles)} Deployment(s), found {len(deployments)}",
    )
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind.get("HorizontalPodAutoscaler", [])}
    claims = {p["metadata"]["name"] for p in by_kind.get("PersistentVolumeClaim", [])}
    for d in deployments:
        n = name_of(d)
        spec = d["spec"]
        pod = spec["template"]["spec"]
        containers = pod["containers"]
        c.expect(len(containers) == 1, f"{n}: expected one container")
        ct = containers[0]
        env = {e["name"]: e for e in ct.get("env", [])}
        role = env.get("JOBQUEUE_ROLE", {}).get("value")
        c.expect(role in roles, f"{n}: JOBQUEUE_ROLE is {role!r}, want one of {roles}")
        for e in ct.get("env", []):
            c.expect(
                e["name"] in known or not e["name"].startswith("JOBQUEUE_"),
                f"{n}: env sets {e['name']}, which src/ does not read",
            )
        if not sqlite:
            dburl = env.get("JOBQUEUE_DB_URL", {})
            c.expect(
                "value" not in dburl and "secretKeyRef" in dburl.get("valueFrom", {}),
                f"{n}: JOBQUEUE_DB_URL must come from a secretKeyRef, never a plain value",
            )

        if sqlite:
            c.expect(
                spec.get("replicas") == 1,
                f"{n}: SQLite renders replicas {spec.get('replicas')}, want 1",
            )
            c.expect(
                spec.get("strategy", {}).get("type") == "Recreate",
                f"{n}: SQLite needs strategy Recreate, found {spec.get('strategy')}",
            )
            c.expect(not hpas, "SQLite: a HorizontalPodAutoscaler is rendered")
            c.expect(
                not by_kind.get("PodDisruptionBudget"), "SQLite: a PodDisruptionBudget is rendered"
            )
        else:
            c.expect(
                spec.get("strategy", {}).get("type") == "RollingUpdate",
                f"{n}: PostgreSQL should roll",
            )
            if d["metadata"]["name"] in hpas:
                c.expect(
                    "replicas" not in spec,
                    f"{n}: has an autoscaler, yet sets replicas (each upgrade would reset it)",
                )

        # terminationGracePeriodSeconds outlasts the service's own shutdown.
        tgps = pod.get("terminationGracePeriodSeconds")
        c.expect(
            isinstance(tgps, int)
            and delay is not None
            and grace is not None
            and tgps > delay + grace + DRAIN_SLACK_SECONDS,
            f"{n}: terminationGracePeriodSeconds {tgps} must exceed delay {delay} + grace {grace} + {DRAIN_SLACK_SECONDS}",
        )

        # Native gRPC probes on the grpc port, with the health names the service reports.
        ports = {p["name"]: p["containerPort"] for p in ct.get("ports", [])}
        c.expect(
            ports.get("grpc") == values["service"]["port"],
            f"{n}: no container port 'grpc' = {values['service']['port']}",
        )
        c.expect(
            ("metrics" in ports) == metrics,
            f"{n}: metrics port present={('metrics' in ports)}, metrics.enabled={metrics}",
        )
        # With TLS the probes, which speak plaintext, go to the port of health alone.
        tls = values["tls"]
        probe_port = ports.get("grpc")
        if tls["secret"]:
            probe_port = ports.get("health")
            c.expect(
                probe_port == tls["healthPort"],
                f"{n}: no container port 'health' = {tls['healthPort']}",
            )
            c.expect(
                env.get("JOBQUEUE_HEALTH_ADDR", {}).get("value") == f"0.0.0.0:{tls['healthPort']}",
                f"{n}: JOBQUEUE_HEALTH_ADDR does not serve health on {tls['healthPort']}",
            )
        else:
            c.expect("health" not in ports, f"{n}: a health port without TLS")
        for probe, service in (
            ("startupProbe", "liveness"),
            ("livenessProbe", "liveness"),
            ("readinessProbe", "readiness"),
        ):
            p = ct.get(probe)
            if not c.expect(p and "grpc" in p, f"{n}: {probe} is not a gRPC probe: {p}"):
                continue
            c.expect(
                type(p["grpc"].get("port")) is int and p["grpc"]["port"] == probe_port,
                f"{n}: {probe}.grpc.port is {p['grpc'].get('port')!r}, want the integer {probe_port}",
            )
            c.expect(
                p["grpc"].get("service") == service,
                f"{n}: {probe}.grpc.service is {p['grpc'].get('service')!r}, want {service!r}",
            )
        sp = ct.get("startupProbe") or {}
        c.expect(
            sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3) >= 120,
            f"{n}: startupProbe allows less than 2 minutes for migrations",
        )

        # Restricted Pod Security profile.
        psc, csc = pod.get("securityContext", {}), ct.get("securityContext", {})
        c.expect(
            psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True,
            f"{n}: runAsNonRoot is not true",
        )
        c.expect(
            csc.get("runAsUser", psc.get("runAsUser")) == USER, f"{n}: runAsUser is not {USER}"
        )
        c.expect(
            csc.get("allowPrivilegeEscalation") is False,
            f"{n}: allowPrivilegeEscalation is not false",
        )
        c.expect(
            csc.get("readOnlyRootFilesystem") is True, f"{n}: readOnlyRootFilesystem is not true"
        )
        c.expect(
            "ALL" in csc.get("capabilities", {}).get("drop", []),
            f"{n}: capabilities do not drop ALL",
        )
        c.expect(not csc.get("capabilities", {}).get("add"), f"{n}: capabilities are added")
        seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        c.expect(
            seccomp == "RuntimeDefault", f"{n}: seccompProfile is {seccomp!r}, want RuntimeDefault"
        )
        c.expect(not csc.get("privileged"), f"{n}: privileged")
        for v in pod.get("volumes", []):
            c.expect(not v.get("hostPath"), f"{n}: hostPath volume {v['name']}")

        # Resources.
        res = ct.get("resources", {})
        for k in ("cpu", "memory"):
            c.expect(k in res.get("requests", {}), f"{n}: no {k} request")
        c.expect("memory" in res.get("limits", {}), f"{n}: no memory limit")

        # Volumes: /tmp and the data folder, which holds the SQLite file.
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in ct.get("volumeMounts", [])}
        c.expect("emptyDir" in volumes.get(mounts.get("/tmp"), {}), f"{n}: /tmp is not an emptyDir")
        # API keys: the keys file from its Secret, read-only, named by JOBQUEUE_KEYS_FILE.
        keys_secret = values["auth"]["keysSecret"]
        keys_file = env.get("JOBQUEUE_KEYS_FILE", {}).get("value")
        if keys_secret:
            item = values["auth"]["keysSecretKey"]
            c.expect(
                keys_file == f"/etc/jobqueue/keys/{item}",
                f"{n}: JOBQUEUE_KEYS_FILE is {keys_file!r}",
            )
            secret = volumes.get(mounts.get("/etc/jobqueue/keys"), {}).get("secret", {})
            c.expect(
                secret.get("secretName") == keys_secret
                and [i["key"] for i in secret.get("items", [])] == [item],
                f"{n}: the keys folder is not the Secret {keys_secret}",
            )
            readonly = [
                m.get("readOnly") for m in ct.get("volumeMounts", [])
                if m["mountPath"] == "/etc/jobqueue/keys"
            ]
            c.expect(readonly == [True], f"{n}: the keys are not mounted read-only")
        else:
            c.expect(keys_file is None, f"{n}: a keys file without auth.keysSecret")
            c.expect(
                config.get("JOBQUEUE_INSECURE_OPEN") == "true",
                f"{n}: no keys and not open: the pod would refuse to start",
            )
        # Destination hosts' limits and breaker, as the settings write them.
        for key, var in (("hostLimits", "JOBQUEUE_HOST_LIMITS"), ("hostBreaker", "JOBQUEUE_HOST_BREAKER")):
            wanted = values["settings"].get(key) or None
            c.expect(
                config.get(var) == wanted,
                f"{n}: {var} is {config.get(var)!r}, want {wanted!r}",
            )
        # Secret headers' keys: their file from its Secret, read-only, named by
        # JOBQUEUE_SECRET_KEYS_FILE; never in the ConfigMap.
        sealing = values["secrets"]["keysSecret"]
        sealing_file = env.get("JOBQUEUE_SECRET_KEYS_FILE", {}).get("value")
        c.expect(
            "JOBQUEUE_SECRET_KEYS" not in config and "JOBQUEUE_SECRET_KEYS" not in env,
            f"{n}: encryption keys in plain settings",
        )
        if sealing:
            item = values["secrets"]["keysSecretKey"]
            c.expect(
                sealing_file == f"/etc/jobqueue/secret-keys/{item}",
                f"{n}: JOBQUEUE_SECRET_KEYS_FILE is {sealing_file!r}",
            )
            secret = volumes.get(mounts.get("/etc/jobqueue/secret-keys"), {}).get("secret", {})
            c.expect(
                secret.get("secretName") == sealing
                and [i["key"] for i in secret.get("items", [])] == [item],
                f"{n}: the secret keys folder is not the Secret {sealing}",
            )
            readonly = [
                m.get("readOnly") for m in ct.get("volumeMounts", [])
                if m["mountPath"] == "/etc/jobqueue/secret-keys"
            ]
            c.expect(readonly == [True], f"{n}: the secret keys are not mounted read-only")
        else:
            c.expect(sealing_file is None, f"{n}: a secret keys file without secrets.keysSecret")
        # TLS: the certificate from its Secret, read-only, whole (a subPath mount would
        # never see a renewal); client CAs likewise.
        for secret_name, folder, items, variables in (
            (tls["secret"], "/etc/jobqueue/tls", ["tls.crt", "tls.key"],
             {"JOBQUEUE_TLS_CERT": "tls.crt", "JOBQUEUE_TLS_KEY": "tls.key"}),
            (tls["clientCaSecret"], "/etc/jobqueue/client-ca", ["ca.crt"],
             {"JOBQUEUE_TLS_CLIENT_CA": "ca.crt"}),
        ):
            placed = [m for m in ct.get("volumeMounts", []) if m["mountPath"] == folder]
            if not secret_name:
                c.expect(not placed, f"{n}: {folder} mounted without its Secret")
                for var in variables:
                    c.expect(var not in env, f"{n}: {var} set without its Secret")
                continue
            secret = volumes.get(mounts.get(folder), {}).get("secret", {})
            c.expect(
                secret.get("secretName") == secret_name
                and [i["key"] for i in secret.get("items", [])] == items,
                f"{n}: {folder} is not the Secret {secret_name} with {items}",
            )
            c.expect(
                [m.get("readOnly") for m in placed] == [True] and not placed[0].get("subPath"),
                f"{n}: {folder} is not mounted read-only and whole",
            )
            for var, item in variables.items():
                c.expect(
                    env.get(var, {}).get("value") == f"{folder}/{item}",
                    f"{n}: {var} is {env.get(var, {}).get('value')!r}",
                )
        if sqlite:
            path = re.sub(r"^sqlite://", "", config.get("JOBQUEUE_DB_URL", "")).split("?")[0]
            folder = str(pathlib.PurePosixPath(path).parent)
            vol = volumes.get(mounts.get(folder), {})
            if values["persistence"]["enabled"]:
                claim = vol.get("persistentVolumeClaim", {}).get("claimName")
                c.expect(
                    claim is not None,
                    f"{n}: the database folder {folder} is not on a PersistentVolumeClaim",
                )
                c.expect(
                    claim in claims or claim == values["persistence"]["existingClaim"],
                    f"{n}: claim {claim!r} is neither rendered nor persistence.existingClaim",
                )
            else:
                c.expect("emptyDir" in vol, f"{n}: the database folder {folder} is not mounted")

        annotations = spec["template"]["metadata"].get("annotations", {})
        c.expect("checksum/config" in annotations, f"{n}: no checksum/config annotation")
        if secrets:
            c.expect("checksum/secret" in annotations, f"{n}: no checksum/secret annotation")

    if sqlite:
        c.expect(
            values["persistence"]["existingClaim"]
            or not values["persistence"]["enabled"]
            or len(claims) == 1,
            f"SQLite: expected one PersistentVolumeClaim, found {len(claims)}",
        )

    # The Service: grpc (and metrics) ports, and only pods that serve the API.
    main = [s for s in services if s["spec"].get("clusterIP") != "None"]
    c.expect(len(main) == 1, f"expected one API Service, found {len(main)}")
    for s in main:
        ports = {p["name"]: p for p in s["spec"]["ports"]}
        c.expect("grpc" in ports, f"{name_of(s)}: no port named grpc")
        c.expect(
            ("metrics" in ports) == metrics,
            f"{name_of(s)}: metrics port present={'metrics' in ports}, metrics.enabled={metrics}",
        )
        component = s["spec"]["selector"].get("app.kubernetes.io/component")
        c.expect(
            component == ("api" if split else "all"),
            f"{name_of(s)}: selects component {component!r}",
        )
        served = [
            d
            for d in deployments
            if all(
                d["spec"]["template"]["metadata"]["labels"].get(k) == v
                for k, v in s["spec"]["selector"].items()
            )
        ]
        c.expect(
            served
            and all(
                {
                    e["name"]: e.get("value")
                    for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
                }.get("JOBQUEUE_ROLE")
                in ("all", "api")
                for d in served
            ),
            f"{name_of(s)}: selects pods that do not serve the API, or none",
        )

    # PostgreSQL: a budget per Deployment; autoscalers point at rendered Deployments.
    deployment_names = {d["metadata"]["name"] for d in deployments}
    if not sqlite and values["podDisruptionBudget"]["enabled"]:
        pdbs = by_kind.get("PodDisruptionBudget", [])
        c.expect(
            len(pdbs) == len(deployments),
            f"expected {len(deployments)} PodDisruptionBudget(s), found {len(pdbs)}",
        )
    for h in hpas:
        c.expect(
            h in deployment_names, f"HorizontalPodAutoscaler targets {h}, which is not rendered"
        )

    # ServiceMonitor endpoints name a port some Service has.
    for m in by_kind.get("ServiceMonitor", []):
        sel = m["spec"]["selector"]["matchLabels"]
        matched = [
            s for s in services if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())
        ]
        for e in m["spec"]["endpoints"]:
            c.expect(
                any(p["name"] == e["port"] for s in matched for p in s["spec"]["ports"]),
                f"{name_of(m)}: no selected Service has a port named {e['port']}",
            )
        if split:
            c.expect(
                any(
                    s["spec"]["selector"].get("app.kubernetes.io/component") == "worker"
                    for s in matched
                ),
                f"{name_of(m)}: workers' metrics are selected by no Service",
            )

    return c.report()


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("rendered")
    s.add_argument("outdir")
    k = sub.add_parser("check")
    k.add_argument("rendered")
    k.add_argument("--chart", required=True)
    k.add_argument("--values")
    r = sub.add_parser("rolls")
    r.add_argument("before")
    r.add_argument("after")
    r.add_argument("annotation")
    args = ap.parse_args()
    return {"split": cmd_split, "check": cmd_check, "rolls": cmd_rolls}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
