#!/usr/bin/env python3
"""Checks rendered Fanfare manifests against the real `fanfare` binary.

Run by scripts/deploy-check.sh on the output of `kubectl kustomize` for every overlay
(after the schema validation by kubernetes-validate). For every container that runs the
Fanfare image it:

- collects what the container is given: `args`, `env` and `envFrom` (the ConfigMaps and
  Secrets are looked up in the same rendered output);
- asks the binary which environment variables the subcommand reads (the `[env: NAME]`
  lines of `fanfare <subcommand> --help`) and fails on any other variable: clap ignores
  unknown variables, so a misspelt or misplaced one would silently change nothing;
- has the binary's own parser (clap) check every flag and every known value: the args
  and each variable turned into its flag (`--flag=value`) are passed before `--help`, and
  clap rejects a bad flag or value before it reaches `--help`. Switches take `true` or
  `false` only, as clap reads them from the environment;
- cross-checks what the binary will do with what Kubernetes expects: the gRPC and metrics
  ports against the effective listen addresses, the probes' port and gRPC service name,
  terminationGracePeriodSeconds against preStop + FANFARE_SHUTDOWN_GRACE_MS, service URLs
  against the rendered Services, the pod's user against the Dockerfile's USER, and the
  hardening every Fanfare pod must have.

It also checks that selectors (Deployments, Services, PDBs, NetworkPolicies) select pods
and that HPAs target a Deployment. It cannot check values that only exist in the cluster
(Secrets created outside kustomize) nor the checks the services make after parsing
(e.g. "a service token is required"): those need the binary to offer a check-only mode.

It also checks the Grafana dashboards (deploy/grafana/*.json): each parses, uses the
Prometheus data source variable, and queries only metrics, and labels of them, that the code
exports (read from the `counter!` / `gauge!` / `histogram!` calls in crates/*/src), so a
renamed or removed metric cannot leave a panel silently empty.

It also checks the Prometheus Operator objects (PodMonitor, PrometheusRule) of a rendering
that has them (deploy/k8s/components/prometheus-operator), which kubernetes-validate has no
schemas for: their fields against a strict subset of the operator's CRDs; that the
PodMonitors scrape a port every selected pod has, and every Fanfare server's metrics port;
that every alert queries only metrics and labels the code exports (as for the dashboards),
has a `for`, a severity, a summary and a description, and a runbook_url into
docs/operations.md whose section names it (and names no alert the rules lack).

`--self-test` breaks a rendered output in known ways and asserts each break is reported
(the container checks on a rendering without monitoring objects, the monitoring checks on
one with them).
"""

from __future__ import annotations

import argparse
import base64
import copy
import difflib
import ipaddress
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import yaml

# Environment variables a Fanfare container may set although the binary does not read
# them. Empty on purpose: add a name here only with a reason next to it.
EXTRA_ENV_ALLOWED: set[str] = set()

# The image deploy/docker/Dockerfile builds (before the overlays' registry prefix and tag).
IMAGE_NAME = "fanfare"
# The binary's path in that image; its ENTRYPOINT.
ENTRYPOINT = ["/fanfare"]
# The Kubernetes default when a pod does not say.
DEFAULT_TERMINATION_GRACE_SECONDS = 30
PART_OF = ("app.kubernetes.io/part-of", "fanfare")
SCHEME_PORTS = {"http": 80, "https": 443, "postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379}
# The repository this file lives in (deploy/tools/check_manifests.py).
REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------
# The binary


@dataclass
class Option:
    """One option of a subcommand, as `--help` describes it."""

    flag: str
    takes_value: bool
    env: str | None
    default: str | None


@dataclass
class Subcommand:
    words: tuple[str, ...]
    about: str
    options: dict[str, Option]  # by flag
    by_env: dict[str, Option]

    def service_name(self) -> str | None:
        """The gRPC service named in backticks in the subcommand's description."""
        match = re.search(r"`([A-Za-z0-9_.]+\.[A-Za-z0-9_]+)`", self.about)
        return match.group(1) if match else None


class Binary:
    def __init__(self, path: str):
        self.path = path
        self._subcommands: dict[tuple[str, ...], Subcommand | str] = {}

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        # An empty environment: only what we pass on the command line counts.
        return subprocess.run([self.path, *argv], env={}, capture_output=True, text=True, timeout=30)

    def subcommand(self, words: tuple[str, ...]) -> Subcommand | str:
        """The subcommand's options, or clap's error when there is no such subcommand."""
        if words not in self._subcommands:
            result = self.run([*words, "--help"])
            if result.returncode != 0:
                self._subcommands[words] = first_error_line(result.stderr)
            else:
                self._subcommands[words] = parse_help(words, result.stdout)
        return self._subcommands[words]

    def parses(self, argv: list[str]) -> str | None:
        """None when clap accepts `argv` (followed by --help), else clap's error."""
        result = self.run([*argv, "--help"])
        if result.returncode == 0:
            return None
        return first_error_line(result.stderr) or f"exit code {result.returncode}"


def first_error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.strip():
            return line.strip()
    return ""


FLAG_LINE = re.compile(r"^\s+(?:-\w, )?(--[A-Za-z0-9][A-Za-z0-9-]*)(?:[ =]<[^>]+>)?\s*$")
ENV_LINE = re.compile(r"\[env: ([A-Za-z_][A-Za-z0-9_]*)")
DEFAULT_LINE = re.compile(r"\[default: ([^\]]*)\]")


def parse_help(words: tuple[str, ...], text: str) -> Subcommand:
    """Reads clap's long help: a flag on a line of its own, then its description."""
    lines = text.splitlines()
    about = lines[0] if lines else ""
    options: dict[str, Option] = {}
    current: Option | None = None
    for line in lines:
        match = FLAG_LINE.match(line)
        if match:
            current = Option(flag=match.group(1), takes_value="<" in line, env=None, default=None)
            options[current.flag] = current
            continue
        if current is None:
            continue
        env = ENV_LINE.search(line)
        if env:
            current.env = env.group(1)
        default = DEFAULT_LINE.search(line)
        if default:
            current.default = default.group(1)
    by_env = {option.env: option for option in options.values() if option.env}
    return Subcommand(words=words, about=about, options=options, by_env=by_env)


# ---------------------------------------------------------------------------------------
# The rendered manifests


@dataclass
class Manifests:
    source: str
    objects: list[dict]

    def find(self, kind: str, name: str, namespace: str | None) -> dict | None:
        for obj in self.objects:
            meta = obj.get("metadata", {})
            if obj.get("kind") == kind and meta.get("name") == name and meta.get("namespace") == namespace:
                return obj
        return None

    def of_kind(self, *kinds: str) -> Iterable[dict]:
        return (obj for obj in self.objects if obj.get("kind") in kinds)


def load(argument: str) -> Manifests:
    """`FILE` or `LABEL=FILE`; problems name the label (e.g. the overlay's folder)."""
    label, _, path = argument.rpartition("=")
    with open(path) as f:
        objects = [obj for obj in yaml.safe_load_all(f) if obj]
    return Manifests(source=label or path, objects=objects)


def describe(obj: dict) -> str:
    meta = obj.get("metadata", {})
    namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {namespace}{meta.get('name')}"


def pod_template(obj: dict) -> dict | None:
    """The pod template (metadata + spec) of a workload, or None."""
    kind = obj.get("kind")
    spec = obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return spec.get("template")
    if kind == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template")
    if kind == "Pod":
        return {"metadata": obj.get("metadata", {}), "spec": spec}
    return None


def workloads(manifests: Manifests) -> Iterable[tuple[dict, dict]]:
    for obj in manifests.objects:
        template = pod_template(obj)
        if template is not None:
            yield obj, template


def image_name(image: str) -> str:
    """`registry/path/fanfare:tag@sha256:…` → `fanfare`."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def selects(selector: dict | None, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# ---------------------------------------------------------------------------------------
# The checks


@dataclass
class Report:
    source: str
    problems: list[str] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}")


@dataclass
class EnvVar:
    value: str | None  # None when only the cluster knows it
    source: str


def secret_items(secret: dict) -> dict[str, str]:
    items = {}
    for key, value in (secret.get("data") or {}).items():
        items[key] = base64.b64decode(value).decode("utf-8", errors="replace")
    items.update(secret.get("stringData") or {})
    return items


def collect_env(manifests: Manifests, report: Report, where: str, namespace: str | None, container: dict) -> dict[str, EnvVar]:
    env: dict[str, EnvVar] = {}

    def add(name: str, var: EnvVar) -> None:
        if name in env:
            report.fail(where, f"{name} is set twice ({env[name].source} and {var.source}); set each variable once")
        env[name] = var

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            config_map = manifests.find("ConfigMap", ref["name"], namespace)
            if config_map is None:
                report.fail(where, f"envFrom names ConfigMap {ref['name']}, which is not in the rendered output")
                continue
            if config_map.get("binaryData"):
                report.fail(where, f"ConfigMap {ref['name']} has binaryData, which cannot be environment variables")
            for key, value in (config_map.get("data") or {}).items():
                add(prefix + key, EnvVar(str(value), f"ConfigMap {ref['name']}"))
        elif "secretRef" in source:
            ref = source["secretRef"]
            secret = manifests.find("Secret", ref["name"], namespace)
            if secret is None:
                report.fail(
                    where,
                    f"envFrom names Secret {ref['name']}, whose keys are unknown here (it is created outside "
                    "kustomize); reference its keys one by one with env[].valueFrom.secretKeyRef so they can be checked",
                )
                continue
            for key, value in secret_items(secret).items():
                add(prefix + key, EnvVar(value, f"Secret {ref['name']}"))

    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            value = str(item["value"])
            if "$(" in value:
                report.fail(where, f"{name} uses $(…) expansion; give the value itself so it can be checked")
            add(name, EnvVar(value, "env"))
            continue
        value_from = item.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            secret = manifests.find("Secret", ref["name"], namespace)
            if secret is None:
                add(name, EnvVar(None, f"Secret {ref['name']} (created outside kustomize; value not checked)"))
            elif ref["key"] not in secret_items(secret):
                report.fail(where, f"{name} reads key {ref['key']!r} of Secret {ref['name']}, which has no such key")
            else:
                add(name, EnvVar(secret_items(secret)[ref["key"]], f"Secret {ref['name']}"))
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            config_map = manifests.find("ConfigMap", ref["name"], namespace)
            data = (config_map or {}).get("data") or {}
            if ref["key"] not in data:
                report.fail(where, f"{name} reads key {ref['key']!r} of ConfigMap {ref['name']}, which is missing")
            else:
                add(name, EnvVar(str(data[ref["key"]]), f"ConfigMap {ref['name']}"))
        else:
            add(name, EnvVar(None, "env (fieldRef/resourceFieldRef; value not checked)"))
    return env


def split_args(args: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """`["serve", "groups", "--x=1"]` → (("serve", "groups"), ["--x=1"])."""
    words: list[str] = []
    for index, arg in enumerate(args):
        if arg.startswith("-"):
            return tuple(words), args[index:]
        words.append(arg)
    return tuple(words), []


def flags_given(subcommand: Subcommand, flags: list[str]) -> dict[str, str | None]:
    """The flags in `args` with their values (None for a switch)."""
    given: dict[str, str | None] = {}
    index = 0
    while index < len(flags):
        arg = flags[index]
        name, _, inline = arg.partition("=")
        option = subcommand.options.get(name)
        if option is not None and option.takes_value and not inline and index + 1 < len(flags):
            given[name] = flags[index + 1]
            index += 2
            continue
        given[name] = inline or None
        index += 1
    return given


def effective(subcommand: Subcommand, given: dict[str, str | None], env: dict[str, EnvVar], env_name: str) -> str | None:
    """What the binary will use for the option behind `env_name`: flag, then env, then default."""
    option = subcommand.by_env.get(env_name)
    if option is None:
        return None
    if option.flag in given:
        return given[option.flag]
    if env_name in env:
        return env[env_name].value
    return option.default


def port_of(address: str | None) -> int | None:
    if not address:
        return None
    match = re.search(r":(\d+)$", address)
    return int(match.group(1)) if match else None


def check_fanfare_container(
    manifests: Manifests,
    report: Report,
    binary: Binary,
    workload: dict,
    template: dict,
    container: dict,
) -> None:
    where = f"{describe(workload)} container {container.get('name')}"
    namespace = workload.get("metadata", {}).get("namespace")
    spec = template.get("spec", {})

    command = container.get("command")
    if command not in (None, ENTRYPOINT):
        report.fail(where, f"command {command} replaces the image's ENTRYPOINT {ENTRYPOINT}; give args only")
    words, flags = split_args([str(arg) for arg in container.get("args") or []])
    if any("$(" in arg for arg in flags):
        report.fail(where, "args use $(…) expansion; give the values themselves so they can be checked")
    if not words:
        report.fail(where, "no subcommand in args (expected e.g. [serve, groups] or [migrate])")
        return
    subcommand = binary.subcommand(words)
    if isinstance(subcommand, str):
        report.fail(where, f"`fanfare {' '.join(words)}` is not a command of the binary: {subcommand}")
        return
    shown = f"`fanfare {' '.join(words)}`"

    # The flags in args, through clap.
    error_in_args = binary.parses([*words, *flags])
    if error_in_args:
        report.fail(where, f"args {flags} rejected by {shown}: {error_in_args}")
    given = flags_given(subcommand, flags)

    # Every variable must be one the binary reads.
    env = collect_env(manifests, report, where, namespace, container)
    for name, var in env.items():
        if name in EXTRA_ENV_ALLOWED:
            continue
        option = subcommand.by_env.get(name)
        if option is None:
            close = difflib.get_close_matches(name, subcommand.by_env, n=1, cutoff=0.85)
            hint = f"did you mean {close[0]}?" if close else f"`{shown[1:-1]} --help` lists what it reads"
            report.fail(where, f"{name} (from {var.source}) is not read by {shown}; {hint}")
        elif option.flag in given:
            report.fail(where, f"{name} (from {var.source}) and {option.flag} in args set the same option; keep one")

    # Every known value, through clap: each variable becomes its flag.
    translated: list[tuple[str, list[str]]] = []
    for name, var in env.items():
        option = subcommand.by_env.get(name)
        if option is None or var.value is None or option.flag in given:
            continue
        if option.takes_value:
            translated.append((name, [f"{option.flag}={var.value}"]))
        elif var.value == "true":
            translated.append((name, [option.flag]))
        elif var.value != "false":
            report.fail(where, f"{name}={var.value!r} (from {var.source}): a switch takes only true or false")
    everything = [*words, *flags, *(arg for _, args in translated for arg in args)]
    combined_error = binary.parses(everything)
    if combined_error:
        # Find the culprits one by one, so the message names the variable.
        named = False
        for name, args in translated:
            error = binary.parses([*words, *args])
            if error:
                named = True
                report.fail(where, f"{name}={env[name].value!r} (from {env[name].source}) rejected by {shown}: {error}")
        if not named and not error_in_args:
            report.fail(where, f"args and variables together rejected by {shown}: {combined_error}")

    # Service URLs must name a rendered Service and one of its ports.
    for name, var in env.items():
        if name.endswith("_URL") and var.value:
            check_url(manifests, report, where, namespace, name, var.value)

    if words[0] == "serve":
        check_server(report, where, workload, spec, container, subcommand, given, env)


def check_url(manifests: Manifests, report: Report, where: str, namespace: str | None, name: str, value: str) -> None:
    try:
        url = urlsplit(value)
        host, port = url.hostname, url.port or SCHEME_PORTS.get(url.scheme)
    except ValueError as e:
        report.fail(where, f"{name}={value!r} is not a URL: {e}")
        return
    if not host or host == "localhost":
        return
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    parts = host.split(".")
    if len(parts) == 1:
        service_name, service_namespace = parts[0], namespace
    elif len(parts) == 2 or parts[2:] in (["svc"], ["svc", "cluster", "local"]):
        service_name, service_namespace = parts[0], parts[1]
    else:
        return  # outside the cluster
    service = manifests.find("Service", service_name, service_namespace)
    if service is None:
        report.fail(where, f"{name}={value!r}: no Service {service_name!r} in the rendered output")
        return
    ports = [p.get("port") for p in service.get("spec", {}).get("ports") or []]
    if port not in ports:
        report.fail(where, f"{name}={value!r}: Service {service_name} has no port {port} (it has {ports})")


def check_server(
    report: Report,
    where: str,
    workload: dict,
    spec: dict,
    container: dict,
    subcommand: Subcommand,
    given: dict[str, str | None],
    env: dict[str, EnvVar],
) -> None:
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}

    listen_port = port_of(effective(subcommand, given, env, "FANFARE_LISTEN_ADDR"))
    if listen_port is None:
        report.fail(where, "cannot tell the gRPC port: FANFARE_LISTEN_ADDR is neither set nor defaulted by the binary")
    elif ports.get("grpc") != listen_port:
        report.fail(where, f"container port 'grpc' is {ports.get('grpc')}, but the binary listens on {listen_port}")

    if "metrics" in ports:
        metrics_port = port_of(effective(subcommand, given, env, "FANFARE_METRICS_ADDR"))
        if metrics_port is None:
            report.fail(where, "declares a metrics port but does not set FANFARE_METRICS_ADDR (its default is not in --help)")
        elif metrics_port != ports["metrics"]:
            report.fail(where, f"container port 'metrics' is {ports['metrics']}, but the binary serves metrics on {metrics_port}")

    # With TLS on, Kubernetes' gRPC probes (which cannot speak TLS) must use the plaintext
    # health port the binary serves beside it.
    tls = effective(subcommand, given, env, "FANFARE_TLS_CERT_FILE") is not None
    probe_port = listen_port
    if tls:
        probe_port = port_of(effective(subcommand, given, env, "FANFARE_PLAINTEXT_HEALTH_ADDR"))
        if probe_port is None:
            report.fail(where, "serves TLS but sets no FANFARE_PLAINTEXT_HEALTH_ADDR: gRPC probes cannot speak TLS")
        elif ports.get("health") != probe_port:
            report.fail(where, f"container port 'health' is {ports.get('health')}, but plaintext health is on {probe_port}")

    if workload.get("kind") != "Job":
        service = subcommand.service_name()
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            if probe is None:
                report.fail(where, f"no {probe_name}")
                continue
            grpc = probe.get("grpc")
            if grpc is None:
                report.fail(where, f"{probe_name} is not a gRPC probe (the image has no shell, and health is gRPC)")
                continue
            if grpc.get("port") != probe_port:
                serves = "plaintext health on" if tls else "listens on"
                report.fail(where, f"{probe_name} checks port {grpc.get('port')}, but the binary {serves} {probe_port}")
            if grpc.get("service", "") not in ("", service):
                report.fail(where, f"{probe_name} asks for gRPC service {grpc.get('service')!r}; the binary serves {service!r} and ''")
        readiness = (container.get("readinessProbe") or {}).get("grpc") or {}
        if readiness and readiness.get("service") != service:
            report.fail(where, f"readinessProbe should ask for {service!r} (its dependencies' health), not {readiness.get('service')!r}")

    # SIGTERM comes after preStop; the pod must outlive the drain.
    grace_ms = effective(subcommand, given, env, "FANFARE_SHUTDOWN_GRACE_MS")
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "exec" in pre_stop:
        report.fail(where, "preStop runs a command, but the image has no shell or tools; use lifecycle.preStop.sleep")
    sleep = int((pre_stop.get("sleep") or {}).get("seconds", 0))
    termination = int(spec.get("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_SECONDS))
    if grace_ms is None or not grace_ms.isdigit():
        report.fail(where, "cannot tell FANFARE_SHUTDOWN_GRACE_MS")
    elif termination <= sleep + math.ceil(int(grace_ms) / 1000):
        report.fail(
            where,
            f"terminationGracePeriodSeconds {termination} must exceed preStop sleep {sleep}s + "
            f"FANFARE_SHUTDOWN_GRACE_MS {grace_ms} ms, or the drain is cut short by SIGKILL",
        )


def check_pod_hardening(report: Report, where: str, spec: dict, container: dict, dockerfile_user: int | None) -> None:
    pod_security = spec.get("securityContext") or {}
    security = container.get("securityContext") or {}

    def setting(key: str) -> Any:
        return security.get(key, pod_security.get(key))

    if spec.get("enableServiceLinks") is not False:
        report.fail(where, "enableServiceLinks must be false: Kubernetes would add <SERVICE>_PORT variables nobody checked")
    if spec.get("automountServiceAccountToken") is not False:
        report.fail(where, "automountServiceAccountToken must be false: the pods call no Kubernetes API")
    if setting("runAsNonRoot") is not True:
        report.fail(where, "runAsNonRoot must be true")
    user = setting("runAsUser")
    if not isinstance(user, int) or user == 0:
        report.fail(where, f"runAsUser must be a numeric non-root user, not {user!r}")
    elif dockerfile_user is not None and user != dockerfile_user:
        report.fail(where, f"runAsUser {user} differs from the image's USER {dockerfile_user}")
    if security.get("readOnlyRootFilesystem") is not True:
        report.fail(where, "readOnlyRootFilesystem must be true")
    if security.get("allowPrivilegeEscalation") is not False:
        report.fail(where, "allowPrivilegeEscalation must be false")
    if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
        report.fail(where, "capabilities must drop ALL")
    if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
        report.fail(where, "seccompProfile must be RuntimeDefault")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(kind) or {}):
                report.fail(where, f"no {resource} {kind}")


def check_references(manifests: Manifests, report: Report) -> None:
    templates = [(obj, template) for obj, template in workloads(manifests)]

    def pods(namespace: str | None, selector: dict | None) -> list[tuple[dict, dict]]:
        return [
            (obj, template)
            for obj, template in templates
            if obj.get("metadata", {}).get("namespace") == namespace
            and selects(selector, (template.get("metadata") or {}).get("labels") or {})
        ]

    def container_ports(template: dict) -> tuple[set, set]:
        names, numbers = set(), set()
        for container in template.get("spec", {}).get("containers") or []:
            for port in container.get("ports") or []:
                names.add(port.get("name"))
                numbers.add(port.get("containerPort"))
        return names, numbers

    for obj, template in templates:
        selector = obj.get("spec", {}).get("selector")
        if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") and not selects(
            selector, (template.get("metadata") or {}).get("labels") or {}
        ):
            report.fail(describe(obj), "spec.selector does not match the pod template's labels")

    for service in manifests.of_kind("Service"):
        spec = service.get("spec", {})
        if "selector" not in spec:
            continue
        namespace = service.get("metadata", {}).get("namespace")
        selected = pods(namespace, {"matchLabels": spec["selector"]})
        if not selected:
            report.fail(describe(service), f"selector {spec['selector']} matches no pod template")
            continue
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for obj, template in selected:
                names, numbers = container_ports(template)
                if target not in names and target not in numbers:
                    report.fail(describe(service), f"port {port.get('name')} targets {target!r}, which {describe(obj)} does not expose")
        fanfare_servers = [obj for obj, template in selected if obj.get("kind") == "Deployment" and is_fanfare_pod(template)]
        if fanfare_servers:
            if spec.get("clusterIP") != "None":
                report.fail(describe(service), "must be headless (clusterIP: None) so gRPC clients can balance across pods")
            tls = any(
                variable.get("name") == "FANFARE_TLS_CERT_FILE"
                for obj, template in selected
                for container in template.get("spec", {}).get("containers") or []
                for variable in container.get("env") or []
            )
            for port in spec.get("ports") or []:
                if port.get("name") != "grpc":
                    continue
                if not tls and port.get("appProtocol") != "kubernetes.io/h2c":
                    report.fail(describe(service), "the grpc port needs appProtocol: kubernetes.io/h2c")
                if tls and port.get("appProtocol") == "kubernetes.io/h2c":
                    report.fail(describe(service), "the grpc port serves TLS: appProtocol kubernetes.io/h2c (cleartext) is wrong")

    for pdb in manifests.of_kind("PodDisruptionBudget"):
        if not pods(pdb.get("metadata", {}).get("namespace"), pdb.get("spec", {}).get("selector")):
            report.fail(describe(pdb), "selector matches no pod template")

    for policy in manifests.of_kind("NetworkPolicy"):
        namespace = policy.get("metadata", {}).get("namespace")
        selector = policy.get("spec", {}).get("podSelector")
        if selector == {}:
            continue
        selected = pods(namespace, selector)
        if not selected:
            report.fail(describe(policy), "podSelector matches no pod template")
        for rule in policy.get("spec", {}).get("ingress") or []:
            for port in rule.get("ports") or []:
                for obj, template in selected:
                    names, numbers = container_ports(template)
                    if port.get("port") not in names and port.get("port") not in numbers:
                        report.fail(describe(policy), f"port {port.get('port')!r} is not exposed by {describe(obj)}")

    for hpa in manifests.of_kind("HorizontalPodAutoscaler"):
        ref = hpa.get("spec", {}).get("scaleTargetRef", {})
        target = manifests.find(ref.get("kind"), ref.get("name"), hpa.get("metadata", {}).get("namespace"))
        if target is None:
            report.fail(describe(hpa), f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not in the rendered output")
        elif target.get("spec", {}).get("replicas") is not None:
            report.fail(describe(target), "sets replicas although an HPA scales it; every apply would reset the count")


PHASE = "fanfare.io/phase"


def check_phases(manifests: Manifests, report: Report) -> None:
    """deploy/README.md applies `setup`, then the `migrate` Job, then the rest: whatever the
    Job (or a setup workload) needs must be labelled `setup`, or step 1 would miss it."""

    def phase(obj: dict) -> str | None:
        return (obj.get("metadata", {}).get("labels") or {}).get(PHASE)

    for namespace in manifests.of_kind("Namespace"):
        if phase(namespace) != "setup":
            report.fail(describe(namespace), f"needs label {PHASE}: setup (it is applied first)")
    for obj, template in workloads(manifests):
        if obj.get("kind") == "Job" and is_fanfare_pod(template) and phase(obj) != "migrate":
            report.fail(describe(obj), f"needs label {PHASE}: migrate (it runs before the services)")
        if phase(obj) not in ("setup", "migrate"):
            continue
        namespace = obj.get("metadata", {}).get("namespace")
        spec = template.get("spec", {})
        needs = [("ServiceAccount", spec.get("serviceAccountName") or "default")]
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            for source in container.get("envFrom") or []:
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        needs.append((kind, source[key]["name"]))
            for item in container.get("env") or []:
                value_from = item.get("valueFrom") or {}
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in value_from:
                        needs.append((kind, value_from[key]["name"]))
        for kind, name in needs:
            needed = manifests.find(kind, name, namespace)
            if needed is not None and phase(needed) != "setup":
                report.fail(describe(needed), f"{describe(obj)} ({PHASE}: {phase(obj)}) needs it, so it needs {PHASE}: setup")


def is_fanfare_pod(template: dict) -> bool:
    labels = (template.get("metadata") or {}).get("labels") or {}
    return labels.get(PART_OF[0]) == PART_OF[1]


def check(manifests: Manifests, binary: Binary, dockerfile_user: int | None) -> Report:
    report = Report(manifests.source)
    fanfare_containers = 0
    for workload, template in workloads(manifests):
        spec = template.get("spec", {})
        containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
        for container in containers:
            where = f"{describe(workload)} container {container.get('name')}"
            if image_name(str(container.get("image", ""))) == IMAGE_NAME:
                fanfare_containers += 1
                check_fanfare_container(manifests, report, binary, workload, template, container)
                check_pod_hardening(report, where, spec, container, dockerfile_user)
            elif is_fanfare_pod(template):
                report.fail(where, f"a Fanfare pod runs image {container.get('image')!r}, not the {IMAGE_NAME!r} image")
    if fanfare_containers == 0:
        report.fail("(all)", f"no container runs the {IMAGE_NAME!r} image: nothing was checked")
    check_references(manifests, report)
    check_phases(manifests, report)
    return report


def dockerfile_user(path: str | None) -> int | None:
    if not path:
        return None
    user = None
    with open(path) as f:
        for line in f:
            match = re.match(r"\s*USER\s+(\S+)", line)
            if match:
                user = match.group(1).split(":", 1)[0]
    if user is None or not user.isdigit():
        raise SystemExit(f"{path}: the final USER must be numeric (Kubernetes cannot verify runAsNonRoot by name)")
    return int(user)


# ---------------------------------------------------------------------------------------
# Self-test: each break of a good rendering must be reported.


def self_test(manifests: Manifests, binary: Binary, user: int | None) -> list[str]:
    baseline = check(manifests, binary, user)
    failures = [f"the unbroken rendering has problems: {baseline.problems}"] if baseline.problems else []

    def deployment(objects: list[dict], service: str) -> dict:
        return next(o for o in objects if o.get("kind") == "Deployment" and o["metadata"]["name"] == f"fanfare-{service}")

    def container(objects: list[dict], service: str) -> dict:
        return deployment(objects, service)["spec"]["template"]["spec"]["containers"][0]

    def own_config_map(objects: list[dict], service: str) -> dict:
        name = container(objects, service)["envFrom"][-1]["configMapRef"]["name"]
        return next(o for o in objects if o.get("kind") == "ConfigMap" and o["metadata"]["name"] == name)

    def set_config(service: str, key: str, value: str) -> Callable[[list[dict]], None]:
        return lambda objects: own_config_map(objects, service)["data"].__setitem__(key, value)

    breaks: list[tuple[str, Callable[[list[dict]], None], str]] = [
        ("a variable the service does not read", set_config("groups", "FANFARE_GROUPS_URL", "http://fanfare-groups:50051"), "FANFARE_GROUPS_URL (from ConfigMap"),
        ("a misspelt variable", set_config("messages", "FANFARE_MESSAGES_MAX_PIN", "5"), "FANFARE_MESSAGES_MAX_PIN (from ConfigMap"),
        ("a number that is not one", set_config("messages", "FANFARE_REQUEST_TIMEOUT_MS", "10s"), "FANFARE_REQUEST_TIMEOUT_MS='10s'"),
        ("a value outside an enum", set_config("groups", "FANFARE_LOG_FORMAT", "text"), "FANFARE_LOG_FORMAT='text'"),
        ("a bad socket address", set_config("groups", "FANFARE_LISTEN_ADDR", "50051"), "FANFARE_LISTEN_ADDR='50051'"),
        ("a switch set to yes", set_config("groups", "FANFARE_MIGRATE_ON_START", "yes"), "a switch takes only true or false"),
        ("an unknown flag", lambda o: container(o, "groups")["args"].append("--bogus-flag"), "unexpected argument '--bogus-flag'"),
        ("an unknown subcommand", lambda o: container(o, "messages")["args"].__setitem__(1, "mesages"), "is not a command of the binary"),
        ("a probe on the wrong port", lambda o: container(o, "groups")["readinessProbe"]["grpc"].__setitem__("port", 50052), "readinessProbe checks port 50052"),
        ("a probe on another service", lambda o: container(o, "groups")["readinessProbe"]["grpc"].__setitem__("service", "fanfare.messages.v1.MessageService"), "readinessProbe asks for gRPC service"),
        ("a listen address the ports do not match", set_config("messages", "FANFARE_LISTEN_ADDR", "0.0.0.0:50099"), "but the binary listens on 50099"),
        ("a grace period shorter than the drain", lambda o: deployment(o, "groups")["spec"]["template"]["spec"].__setitem__("terminationGracePeriodSeconds", 12), "terminationGracePeriodSeconds 12"),
        ("a URL naming no Service", set_config("messages", "FANFARE_GROUPS_URL", "http://fanfare-grups:50051"), "no Service 'fanfare-grups'"),
        ("service links left on", lambda o: deployment(o, "groups")["spec"]["template"]["spec"].pop("enableServiceLinks"), "enableServiceLinks must be false"),
        ("a writable root filesystem", lambda o: container(o, "messages")["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem must be true"),
        ("a ConfigMap the Job needs outside the setup phase", lambda o: next(x for x in o if x.get("kind") == "ConfigMap" and x["metadata"]["name"].startswith("fanfare-common"))["metadata"]["labels"].pop(PHASE), "needs fanfare.io/phase: setup"),
        ("a command replacing the entrypoint", lambda o: container(o, "groups").__setitem__("command", ["/bin/sh", "-c"]), "replaces the image's ENTRYPOINT"),
    ]
    for title, breaker, expected in breaks:
        objects = copy.deepcopy(manifests.objects)
        breaker(objects)
        report = check(Manifests(f"{manifests.source} [{title}]", objects), binary, user)
        if not any(expected in problem for problem in report.problems):
            failures.append(f"{title}: expected a problem containing {expected!r}, got {report.problems or 'none'}")
    print(f"check_manifests: self-test: {len(breaks) - len([f for f in failures if not f.startswith('the unbroken')])} of {len(breaks)} breaks reported")
    return failures


# ---------------------------------------------------------------------------------------
# The Grafana dashboards: every metric a query uses must be one the code exports.


@dataclass
class Metric:
    """A metric the code records, as the Prometheus exporter will show it."""

    name: str
    kind: str  # counter, gauge or histogram (the macro used)
    labels: set[str] = field(default_factory=set)

    def series(self, buckets: bool) -> dict[str, set[str]]:
        """The series names Prometheus sees, each with the labels it carries."""
        if self.kind != "histogram":
            return {self.name: self.labels}
        if buckets:
            return {f"{self.name}_bucket": self.labels | {"le"}, f"{self.name}_sum": self.labels, f"{self.name}_count": self.labels}
        # A histogram without configured buckets is exported as a summary.
        return {self.name: self.labels | {"quantile"}, f"{self.name}_sum": self.labels, f"{self.name}_count": self.labels}


METRIC_MACRO = re.compile(r"\b(describe_counter|describe_gauge|describe_histogram|counter|gauge|histogram)!\s*\(")
STR_CONSTANT = re.compile(r"\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:'static\s+)?str\s*=\s*\"([^\"]*)\"")
LABEL_KEY = re.compile(r"\"([A-Za-z_][A-Za-z0-9_]*)\"\s*=>")
# Where the exporter is told which histograms get buckets (crates/fanfare-core/src/metrics.rs).
BUCKETS_BY_SUFFIX = re.compile(r"Matcher::Suffix\(\s*\"([a-z_]+)\"")
# Labels Prometheus adds from the scrape target, whatever the code records.
TARGET_LABELS = {"job", "instance", "pod", "namespace", "container", "node", "endpoint"}
# Prefixes of the metrics the code exports: its own, and the process metrics it records
# under the names Prometheus' client libraries use (crates/fanfare-core/src/metrics/process.rs).
METRIC_PREFIXES = ("fanfare_", "process_")
USED_METRIC = re.compile(r"(?<![A-Za-z0-9_:])((?:fanfare|process)_[A-Za-z0-9_:]*)")


def macro_arguments(text: str, start: int) -> str:
    """The text between the `(` ending at `start` and its matching `)`."""
    depth, index = 1, start
    while index < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        index += 1
    return text[start : index - 1]


def exported_metrics(crates: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Every series name the services export with its labels, and problems reading them."""
    files = sorted(crates.glob("*/src/**/*.rs"))
    texts = {path: path.read_text() for path in files}
    constants: dict[str, set[str]] = {}
    for text in texts.values():
        for match in STR_CONSTANT.finditer(text):
            constants.setdefault(match.group(1), set()).add(match.group(2))
    metrics: dict[str, Metric] = {}
    bucket_suffixes: set[str] = set()
    for path, text in texts.items():
        bucket_suffixes.update(BUCKETS_BY_SUFFIX.findall(text))
        for match in METRIC_MACRO.finditer(text):
            arguments = macro_arguments(text, match.end())
            first = arguments.split(",", 1)[0].strip()
            if first.startswith('"'):
                names = {first.strip('"')}
            else:
                names = constants.get(first.split("::")[-1].strip(), set())
            kind = match.group(1).removeprefix("describe_")
            for name in (name for name in names if name.startswith(METRIC_PREFIXES)):
                metric = metrics.setdefault(name, Metric(name, kind))
                if not match.group(1).startswith("describe_"):
                    metric.labels.update(LABEL_KEY.findall(arguments))
    problems = []
    if len(metrics) < 10:
        problems.append(f"found only {len(metrics)} metrics under {crates}: the scan of the sources is broken")
    if not bucket_suffixes:
        problems.append("no Matcher::Suffix bucket setting found in the sources: which histograms have buckets is unknown")
    series: dict[str, set[str]] = {}
    for metric in metrics.values():
        buckets = any(metric.name.endswith(suffix) for suffix in bucket_suffixes)
        series.update(metric.series(buckets))
    return series, problems


def without_strings(expression: str) -> str:
    """PromQL with its string literals emptied (label values, regexes)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expression)


def dashboard_queries(dashboard: dict) -> Iterable[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""

    def panels(items: list) -> Iterable[dict]:
        for panel in items or []:
            yield panel
            yield from panels(panel.get("panels") or [])

    for panel in panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                yield f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if query:
            yield f"variable ${variable.get('name')}", query


def check_expression(report: Report, where: str, expression: str, series: dict[str, set[str]]) -> None:
    plain = without_strings(expression)
    used = USED_METRIC.findall(plain)
    if not used:
        report.fail(where, f"queries no fanfare_ (or process_) metric: {expression}")
    known_labels = set(TARGET_LABELS)
    for name in used:
        if name not in series:
            close = difflib.get_close_matches(name, series, n=1, cutoff=0.8)
            hint = f"did you mean {close[0]}?" if close else "no metric of that name is recorded in crates/*/src"
            report.fail(where, f"{name} is not a metric the code exports; {hint}")
            continue
        known_labels |= series[name]
        # Label matchers right after the name: name{label="…", …}.
        for matchers in re.findall(rf"(?<![A-Za-z0-9_:]){re.escape(name)}\s*\{{([^}}]*)\}}", plain):
            for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                if label not in series[name] | TARGET_LABELS:
                    report.fail(where, f"{name} has no label {label!r} (it has {sorted(series[name]) or 'none'})")
    # Grouping labels: by (…), without (…), label_values(metric, label).
    grouped = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", plain)
    grouped += re.findall(r"label_values\s*\([^,]*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", plain)
    for group in grouped:
        for label in (label.strip() for label in group.split(",") if label.strip()):
            if label not in known_labels:
                report.fail(where, f"groups by {label!r}, which none of its metrics has ({', '.join(sorted(set(used)))})")


def check_dashboard(path: Path, dashboard: dict, series: dict[str, set[str]]) -> Report:
    report = Report(str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path))
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        report.fail("(dashboard)", f"schemaVersion {dashboard.get('schemaVersion')!r}: export from Grafana 9 or later")
    variables = (dashboard.get("templating") or {}).get("list") or []
    source = next((v for v in variables if v.get("type") == "datasource" and v.get("query") == "prometheus"), None)
    if source is None:
        report.fail("(dashboard)", "no Prometheus data source variable (type datasource, query prometheus)")
    wanted_uid = f"${{{source['name']}}}" if source else None
    ids = [panel.get("id") for panel in dashboard.get("panels") or []]
    if len(ids) != len(set(ids)):
        report.fail("(dashboard)", "panel ids repeat")
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            continue
        where = f"panel {panel.get('title')!r}"
        if not panel.get("targets"):
            report.fail(where, "has no query")
        for item in [panel, *(panel.get("targets") or [])]:
            uid = (item.get("datasource") or {}).get("uid")
            if wanted_uid and uid != wanted_uid:
                report.fail(where, f"data source {uid!r}; use {wanted_uid} so the dashboard imports anywhere")
    for where, expression in dashboard_queries(dashboard):
        check_expression(report, where, expression, series)
    return report


def load_dashboard(path: Path, report_source: str) -> tuple[dict | None, Report]:
    report = Report(report_source)
    try:
        return json.loads(path.read_text()), report
    except (OSError, ValueError) as error:
        report.fail("(file)", f"is not readable JSON: {error}")
        return None, report


def check_dashboards(paths: list[Path], crates: Path) -> list[str]:
    series, problems = exported_metrics(crates)
    problems = [f"dashboards: {problem}" for problem in problems]
    if not paths:
        problems.append("dashboards: no deploy/grafana/*.json found")
    for path in paths:
        dashboard, report = load_dashboard(path, str(path))
        if dashboard is not None:
            report = check_dashboard(path, dashboard, series)
        problems.extend(report.problems)
        if not report.problems:
            queries = sum(1 for _ in dashboard_queries(dashboard or {}))
            print(f"check_manifests: {report.source}: ok ({queries} queries, each on a metric the code exports)")
    return problems


def self_test_dashboards(paths: list[Path], crates: Path) -> list[str]:
    """Each break of a good dashboard must be reported."""
    series, problems = exported_metrics(crates)
    if problems or not paths:
        return problems or ["no dashboard to break"]
    path = paths[0]
    good = json.loads(path.read_text())

    def first_target(dashboard: dict) -> dict:
        return next(t for p in dashboard["panels"] for t in p.get("targets") or [] if "fanfare_grpc_requests_total" in t["expr"])

    def set_expr(expression: str) -> Callable[[dict], None]:
        return lambda dashboard: first_target(dashboard).__setitem__("expr", expression)

    breaks: list[tuple[str, Callable[[dict], None], str]] = [
        ("a metric the code does not export", set_expr("sum(rate(fanfare_grpc_request_totl[5m]))"), "did you mean fanfare_grpc_requests_total"),
        ("a histogram's bucket of a counter", set_expr("sum(rate(fanfare_grpc_requests_total_bucket[5m]))"), "fanfare_grpc_requests_total_bucket is not a metric"),
        ("a label the metric lacks", set_expr('sum(rate(fanfare_grpc_requests_total{reason="x"}[5m]))'), "has no label 'reason'"),
        ("grouping by a label no metric has", set_expr("sum by (pod_name) (rate(fanfare_grpc_requests_total[5m]))"), "groups by 'pod_name'"),
        ("a hard-wired data source", lambda d: first_target(d).__setitem__("datasource", {"type": "prometheus", "uid": "abc"}), "use ${datasource}"),
    ]
    failures = []
    for title, breaker, expected in breaks:
        broken = copy.deepcopy(good)
        breaker(broken)
        report = check_dashboard(path, broken, series)
        if not any(expected in problem for problem in report.problems):
            failures.append(f"dashboard, {title}: expected a problem containing {expected!r}, got {report.problems or 'none'}")
    print(f"check_manifests: self-test: {len(breaks) - len(failures)} of {len(breaks)} dashboard breaks reported")
    return failures


# ---------------------------------------------------------------------------------------
# Prometheus Operator objects (deploy/k8s/components/prometheus-operator): kubernetes-validate
# has no schemas for monitoring.coreos.com, so their shape is checked here against the
# fields Fanfare uses, and their meaning against the pods and the code.

MONITORING_GROUP = "monitoring.coreos.com/"
# The runbook the alerts point to, and its section that lists them.
RUNBOOK = REPO_ROOT / "docs" / "operations.md"
SEVERITIES = {"critical", "warning", "info"}
# A Prometheus duration: 30s, 5m, 1h30m, 0m.
DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")

# Shapes, a strict subset of the operator's CRD schemas (v1): a dict lists the fields
# allowed (any other is reported, as kubernetes-validate --strict reports unknown fields),
# a one-element list is a list of that shape, a type is a scalar, STRING_MAP a map of
# strings, ANY anything (relabelings).
STRING_MAP = "string map"
ANY = "any"
LABEL_SELECTOR = {
    "matchLabels": STRING_MAP,
    "matchExpressions": [{"key": str, "operator": str, "values": [str]}],
}
METADATA = {"name": str, "namespace": str, "labels": STRING_MAP, "annotations": STRING_MAP}
MONITORING_SHAPES: dict[str, dict] = {
    "PodMonitor": {
        "apiVersion": str,
        "kind": str,
        "metadata": METADATA,
        "spec": {
            "jobLabel": str,
            "podTargetLabels": [str],
            "selector": LABEL_SELECTOR,
            "namespaceSelector": {"any": bool, "matchNames": [str]},
            "sampleLimit": int,
            "podMetricsEndpoints": [
                {
                    "port": str,
                    "path": str,
                    "scheme": str,
                    "interval": str,
                    "scrapeTimeout": str,
                    "honorLabels": bool,
                    "relabelings": ANY,
                    "metricRelabelings": ANY,
                }
            ],
        },
    },
    "PrometheusRule": {
        "apiVersion": str,
        "kind": str,
        "metadata": METADATA,
        "spec": {
            "groups": [
                {
                    "name": str,
                    "interval": str,
                    "limit": int,
                    "rules": [
                        {
                            "alert": str,
                            "record": str,
                            "expr": str,
                            "for": str,
                            "keep_firing_for": str,
                            "labels": STRING_MAP,
                            "annotations": STRING_MAP,
                        }
                    ],
                }
            ]
        },
    },
}
# Fields each kind must have (the operator's required ones, and what Fanfare relies on).
REQUIRED = {
    "PodMonitor": [("spec", "selector"), ("spec", "podMetricsEndpoints")],
    "PrometheusRule": [("spec", "groups")],
}


def check_shape(report: Report, where: str, value: Any, shape: Any, path: str) -> None:
    if shape == ANY:
        return
    if shape == STRING_MAP:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            report.fail(where, f"{path} must map names to strings")
        return
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            report.fail(where, f"{path} must be an object")
            return
        for key, item in value.items():
            if key not in shape:
                close = difflib.get_close_matches(key, shape, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                report.fail(where, f"unknown field {path}.{key}{hint}")
            else:
                check_shape(report, where, item, shape[key], f"{path}.{key}")
        return
    if isinstance(shape, list):
        if not isinstance(value, list):
            report.fail(where, f"{path} must be a list")
            return
        for index, item in enumerate(value):
            check_shape(report, where, item, shape[0], f"{path}[{index}]")
        return
    # A bool is an int to Python: tell them apart.
    if not isinstance(value, shape) or (shape is int and isinstance(value, bool)):
        report.fail(where, f"{path} must be a {shape.__name__}, not {value!r}")


def markdown_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_sections(text: str) -> dict[str, str]:
    """Each heading's anchor with the text under it (up to the next heading); a `#` line in
    a fenced code block is a comment, not a heading."""
    sections: dict[str, str] = {}
    current = None
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            current = markdown_anchor(match.group(1))
            sections.setdefault(current, "")
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def balanced(expression: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in without_strings(expression):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def check_monitoring(manifests: Manifests, series: dict[str, set[str]], runbook: str) -> Report:
    """Shapes of the monitoring.coreos.com objects; the PodMonitors against the pods, the
    alerts against the metrics the code exports and against the runbook."""
    report = Report(manifests.source)
    sections = runbook_sections(runbook)
    alerts: dict[str, str] = {}  # name → where
    runbook_anchors: set[str] = set()
    for obj in manifests.objects:
        if not str(obj.get("apiVersion", "")).startswith(MONITORING_GROUP):
            continue
        where, kind = describe(obj), obj.get("kind")
        if kind not in MONITORING_SHAPES:
            report.fail(where, f"no structural check for {kind} here; add its shape to MONITORING_SHAPES")
            continue
        if obj.get("apiVersion") != "monitoring.coreos.com/v1":
            report.fail(where, f"apiVersion {obj.get('apiVersion')!r}; the operator serves monitoring.coreos.com/v1")
        check_shape(report, where, obj, MONITORING_SHAPES[kind], kind)
        for path in REQUIRED[kind]:
            value: Any = obj
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if not value:
                report.fail(where, f"{kind}.{'.'.join(path)} is required")
        if kind == "PodMonitor":
            check_pod_monitor(manifests, report, obj)
        else:
            check_rules(report, obj, series, sections, alerts, runbook_anchors)
    # Every alert the runbook's section names must be one the rules define.
    if alerts:
        for anchor in runbook_anchors:
            for name in sorted(set(re.findall(r"`(Fanfare[A-Z][A-Za-z]+)`", sections.get(anchor, "")))):
                if name not in alerts:
                    report.fail(f"{RUNBOOK.name}#{anchor}", f"names alert {name}, which no PrometheusRule defines")
    # Every Fanfare server's metrics port is scraped.
    monitors = list(manifests.of_kind("PodMonitor"))
    if monitors:
        for obj, template in workloads(manifests):
            ports = {p.get("name") for c in template.get("spec", {}).get("containers") or [] for p in c.get("ports") or []}
            if obj.get("kind") != "Deployment" or not is_fanfare_pod(template) or "metrics" not in ports:
                continue
            labels = (template.get("metadata") or {}).get("labels") or {}
            namespace = obj.get("metadata", {}).get("namespace")
            if not any(monitor_selects(monitor, namespace, labels) for monitor in monitors):
                report.fail(describe(obj), "has a metrics port that no PodMonitor scrapes")
    return report


def monitor_selects(monitor: dict, namespace: str | None, labels: dict) -> bool:
    spec = monitor.get("spec") or {}
    namespaces = spec.get("namespaceSelector") or {}
    if not namespaces.get("any"):
        allowed = namespaces.get("matchNames") or [monitor.get("metadata", {}).get("namespace")]
        if namespace not in allowed:
            return False
    return selects(spec.get("selector") or {}, labels)


def check_pod_monitor(manifests: Manifests, report: Report, monitor: dict) -> None:
    where = describe(monitor)
    selected = [
        (obj, template)
        for obj, template in workloads(manifests)
        if monitor_selects(monitor, obj.get("metadata", {}).get("namespace"), (template.get("metadata") or {}).get("labels") or {})
    ]
    if not selected:
        report.fail(where, "selector matches no pod template")
    for endpoint in (monitor.get("spec") or {}).get("podMetricsEndpoints") or []:
        port = endpoint.get("port")
        if not port:
            report.fail(where, "a podMetricsEndpoint names no port; name the container port (metrics)")
            continue
        for obj, template in selected:
            names = {p.get("name") for c in template.get("spec", {}).get("containers") or [] for p in c.get("ports") or []}
            if port not in names:
                report.fail(where, f"scrapes port {port!r}, which {describe(obj)} does not expose")
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint and not DURATION.match(str(endpoint[key])):
                report.fail(where, f"{key} {endpoint[key]!r} is not a Prometheus duration")


def check_rules(
    report: Report,
    rule_object: dict,
    series: dict[str, set[str]],
    sections: dict[str, str],
    alerts: dict[str, str],
    runbook_anchors: set[str],
) -> None:
    for group in (rule_object.get("spec") or {}).get("groups") or []:
        for index, rule in enumerate(group.get("rules") or []):
            name = rule.get("alert") or rule.get("record")
            where = f"{describe(rule_object)} group {group.get('name')!r} rule {name or index}"
            expression = rule.get("expr")
            if not isinstance(expression, str) or not expression.strip():
                report.fail(where, "has no expr")
                continue
            if not balanced(expression):
                report.fail(where, f"unbalanced brackets in expr: {expression.strip()}")
            check_expression(report, where, expression, series)
            if "alert" not in rule:
                continue
            if name in alerts:
                report.fail(where, f"alert {name} is defined twice (also at {alerts[name]})")
            alerts[name] = where
            if not DURATION.match(str(rule.get("for", ""))):
                report.fail(where, f"for {rule.get('for')!r}: give a Prometheus duration (0m for at once)")
            severity = (rule.get("labels") or {}).get("severity")
            if severity not in SEVERITIES:
                report.fail(where, f"label severity {severity!r}; use one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description"):
                if not str(annotations.get(key, "")).strip():
                    report.fail(where, f"no {key} annotation")
            runbook = str(annotations.get("runbook_url", ""))
            match = re.search(r"docs/operations\.md#([\w-]+)$", runbook)
            if not match:
                report.fail(where, f"runbook_url {runbook!r} must point to a section of docs/operations.md")
                continue
            anchor = match.group(1)
            if anchor not in sections:
                report.fail(where, f"runbook_url {runbook!r}: docs/operations.md has no heading #{anchor}")
                continue
            runbook_anchors.add(anchor)
            if f"`{name}`" not in sections[anchor]:
                report.fail(where, f"alert {name} is not explained in docs/operations.md#{anchor} (name it there in backticks)")


def check_monitoring_renderings(paths: list[str], crates: Path) -> list[str]:
    """check_monitoring on every rendering that has monitoring.coreos.com objects."""
    series, problems = exported_metrics(crates)
    runbook = RUNBOOK.read_text()
    for argument in paths:
        manifests = load(argument)
        objects = [o for o in manifests.objects if str(o.get("apiVersion", "")).startswith(MONITORING_GROUP)]
        if not objects:
            continue
        report = check_monitoring(manifests, series, runbook)
        problems.extend(report.problems)
        if not report.problems:
            rules = sum(len(g.get("rules") or []) for o in objects for g in (o.get("spec") or {}).get("groups") or [])
            print(f"check_manifests: {manifests.source}: ok ({len(objects)} Prometheus Operator objects, {rules} rules on metrics the code exports)")
    return problems


def self_test_monitoring(manifests: Manifests, crates: Path) -> list[str]:
    """Each break of a good rendering's PodMonitor or PrometheusRule must be reported."""
    series, problems = exported_metrics(crates)
    if problems:
        return problems
    runbook = RUNBOOK.read_text()
    baseline = check_monitoring(manifests, series, runbook)
    failures = [f"the unbroken monitoring objects have problems: {baseline.problems}"] if baseline.problems else []

    def of_kind(objects: list[dict], kind: str) -> dict:
        return next(o for o in objects if o.get("kind") == kind)

    def first_alert(objects: list[dict]) -> dict:
        return of_kind(objects, "PrometheusRule")["spec"]["groups"][0]["rules"][0]

    def set_expr(expression: str) -> Callable[[list[dict]], None]:
        return lambda objects: first_alert(objects).__setitem__("expr", expression)

    breaks: list[tuple[str, Callable[[list[dict]], None], str]] = [
        ("an alert on a metric the code does not export", set_expr("sum(rate(fanfare_grpc_request_totl[5m])) > 0"), "did you mean fanfare_grpc_requests_total"),
        ("an alert on a label the metric lacks", set_expr('sum(rate(fanfare_grpc_requests_total{reason="x"}[5m])) > 0'), "has no label 'reason'"),
        ("an alert grouping by a label no metric has", set_expr("sum by (svc) (rate(fanfare_grpc_requests_total[5m])) > 0"), "groups by 'svc'"),
        ("an alert with unbalanced brackets", set_expr("sum(rate(fanfare_grpc_requests_total[5m]) > 0"), "unbalanced brackets"),
        ("an alert without severity", lambda o: first_alert(o)["labels"].pop("severity"), "label severity None"),
        ("an alert without summary", lambda o: first_alert(o)["annotations"].pop("summary"), "no summary annotation"),
        ("a for that is no duration", lambda o: first_alert(o).__setitem__("for", "5 minutes"), "for '5 minutes'"),
        ("a runbook section that does not exist", lambda o: first_alert(o)["annotations"].__setitem__("runbook_url", "docs/operations.md#alerts"), "has no heading #alerts"),
        ("an alert the runbook does not explain", lambda o: first_alert(o).__setitem__("alert", "FanfareUndocumented"), "FanfareUndocumented is not explained"),
        ("a misspelt rule field", lambda o: first_alert(o).__setitem__("expression", first_alert(o)["expr"]), "unknown field PrometheusRule.spec.groups[0].rules[0].expression"),
        ("a PodMonitor on a port the pods lack", lambda o: of_kind(o, "PodMonitor")["spec"]["podMetricsEndpoints"][0].__setitem__("port", "prometheus"), "scrapes port 'prometheus'"),
        ("a PodMonitor that misses a service", lambda o: of_kind(o, "PodMonitor")["spec"]["selector"]["matchExpressions"][0].__setitem__("values", ["groups", "messages"]), "no PodMonitor scrapes"),
        ("a monitoring kind with no check", lambda o: o.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"}}), "no structural check for ServiceMonitor"),
    ]
    for title, breaker, expected in breaks:
        objects = copy.deepcopy(manifests.objects)
        breaker(objects)
        report = check_monitoring(Manifests(f"{manifests.source} [{title}]", objects), series, runbook)
        if not any(expected in problem for problem in report.problems):
            failures.append(f"monitoring, {title}: expected a problem containing {expected!r}, got {report.problems or 'none'}")
    reported = len(breaks) - len([f for f in failures if f.startswith("monitoring, ")])
    print(f"check_manifests: self-test: {reported} of {len(breaks)} monitoring breaks reported")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="the fanfare binary to ask")
    parser.add_argument("--dockerfile", help="deploy/docker/Dockerfile, to compare its USER with runAsUser")
    parser.add_argument("--self-test", action="store_true", help="break the (one) rendered file in known ways")
    parser.add_argument(
        "--dashboards",
        nargs="*",
        type=Path,
        default=sorted((REPO_ROOT / "deploy" / "grafana").glob("*.json")),
        help="Grafana dashboards to check (default: deploy/grafana/*.json)",
    )
    parser.add_argument("--sources", type=Path, default=REPO_ROOT / "crates", help="the crates whose metrics are exported")
    parser.add_argument("rendered", nargs="+", help="`kubectl kustomize` output files, as FILE or LABEL=FILE")
    args = parser.parse_args()

    binary = Binary(args.binary)
    user = dockerfile_user(args.dockerfile)
    if args.self_test:
        failures = []
        for path in args.rendered:
            manifests = load(path)
            if any(str(o.get("apiVersion", "")).startswith(MONITORING_GROUP) for o in manifests.objects):
                failures += self_test_monitoring(manifests, args.sources)
            else:
                failures += self_test(manifests, binary, user)
        failures += self_test_dashboards(args.dashboards, args.sources)
        for failure in failures:
            print(f"check_manifests: SELF-TEST FAILED: {failure}", file=sys.stderr)
        return 1 if failures else 0

    problems = []
    for argument in args.rendered:
        manifests = load(argument)
        report = check(manifests, binary, user)
        problems.extend(report.problems)
        if not report.problems:
            print(f"check_manifests: {manifests.source}: ok")
    problems.extend(check_dashboards(args.dashboards, args.sources))
    problems.extend(check_monitoring_renderings(args.rendered, args.sources))
    for problem in problems:
        print(f"check_manifests: FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
