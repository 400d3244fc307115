"""Kubernetes manifests: schema-valid once rendered, hardened, least-privilege on the network."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.config import public_url_problem

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAY = K8S / "overlays" / "production"
VENV_BIN = Path(sys.executable).parent
# Pinned so that a newer kubernetes-validate cannot silently change what "valid" means.
KUBERNETES_VERSION = "1.30.0"

Manifest = dict[str, Any]

# Kinds that have no namespace; kustomize's namespace transformer leaves them alone.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "IngressClass",
    "CustomResourceDefinition",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# Where kustomize's `labels: includeTemplates` adds labels inside workload objects.
TEMPLATE_LABEL_PATHS = {
    "Deployment": ("spec", "template", "metadata", "labels"),
    "StatefulSet": ("spec", "template", "metadata", "labels"),
    "DaemonSet": ("spec", "template", "metadata", "labels"),
    "ReplicaSet": ("spec", "template", "metadata", "labels"),
    "Job": ("spec", "template", "metadata", "labels"),
}
SUPPORTED_KEYS = {"apiVersion", "kind", "namespace", "resources", "labels", "images", "patches"}


# --- a small, strict kustomize ------------------------------------------------------------
# Implements exactly the kustomization features used under deploy/k8s, as kustomize does, and
# refuses any other key, so a manifest change can never be "validated" by silently ignoring it.


def _setdefault_path(obj: Manifest, path: tuple[str, ...]) -> dict[str, Any]:
    """Return the mapping at ``path``, creating empty mappings along the way."""
    node: dict[str, Any] = obj
    for key in path:
        if node.get(key) is None:
            node[key] = {}
        node = node[key]
    return node


def _pointer(path: str) -> list[str]:
    """Split an RFC 6901 JSON pointer into unescaped tokens."""
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _apply_json6902(doc: Manifest, ops: list[dict[str, Any]]) -> None:
    """Apply RFC 6902 add/replace/remove/test operations in place."""
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        kind = op["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, op["value"])
            elif kind == "replace":
                node[index] = op["value"]
            elif kind == "remove":
                del node[index]
            elif kind == "test":
                assert node[index] == op["value"], op
            else:
                raise ValueError(f"unsupported patch op {kind!r}")
        else:
            if kind in {"replace", "remove", "test"} and last not in node:
                raise KeyError(f"patch path {op['path']!r} does not exist")
            if kind in {"add", "replace"}:
                node[last] = op["value"]
            elif kind == "remove":
                del node[last]
            elif kind == "test":
                assert node[last] == op["value"], op
            else:
                raise ValueError(f"unsupported patch op {kind!r}")


def _set_image(container: dict[str, Any], rules: list[dict[str, str]]) -> None:
    """Apply kustomize `images:` rules to one container."""
    image = container["image"]
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    for rule in rules:
        if rule["name"] == name:
            new = rule.get("newName", name)
            if "digest" in rule:
                container["image"] = f"{new}@{rule['digest']}"
            else:
                container["image"] = f"{new}:{rule['newTag']}" if "newTag" in rule else new


def _pod_specs(doc: Manifest) -> Iterator[dict[str, Any]]:
    """Yield the pod spec(s) inside a workload object."""
    if doc["kind"] in TEMPLATE_LABEL_PATHS:
        yield doc["spec"]["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif doc["kind"] == "Pod":
        yield doc["spec"]


def render_kustomization(directory: Path) -> list[Manifest]:
    """Render ``directory/kustomization.yaml`` the way ``kustomize build`` would."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED_KEYS
    assert not unknown, (
        f"{directory}: kustomization keys not supported by the test renderer: {unknown}"
    )
    assert spec.get("kind", "Kustomization") == "Kustomization"

    docs: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs.extend(render_kustomization(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    docs = copy.deepcopy(docs)

    for patch in spec.get("patches", []):
        target = patch["target"]
        ops = yaml.safe_load(patch["patch"])
        assert isinstance(ops, list), "only JSON 6902 patches are supported"
        matches = [
            d
            for d in docs
            if all(
                d["metadata"].get(k) == v if k in ("name", "namespace") else d.get(k) == v
                for k, v in target.items()
            )
        ]
        assert matches, f"patch target {target} matches nothing"
        for doc in matches:
            _apply_json6902(doc, ops)

    namespace = spec.get("namespace")
    if namespace:
        for doc in docs:
            if doc["kind"] in CLUSTER_SCOPED:
                if doc["kind"] == "Namespace":
                    assert doc["metadata"]["name"] == namespace, (
                        "Namespace object must match `namespace:`"
                    )
                continue
            doc["metadata"]["namespace"] = namespace

    for label_set in spec.get("labels", []):
        assert not label_set.get("includeSelectors", False), "selector labels are not supported"
        pairs = label_set["pairs"]
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(pairs)
            path = TEMPLATE_LABEL_PATHS.get(doc["kind"])
            if label_set.get("includeTemplates", False) and path:
                _setdefault_path(doc, path).update(pairs)

    rules = spec.get("images", [])
    if rules:
        for doc in docs:
            for pod in _pod_specs(doc):
                for container in pod.get("initContainers", []) + pod.get("containers", []):
                    _set_image(container, rules)
    return docs


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[Manifest]:
    """The production overlay, rendered."""
    return render_kustomization(OVERLAY)


def _one(docs: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _workloads(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] in {"Deployment", "Job"}]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Evaluate a LabelSelector (matchLabels + In/NotIn/Exists/DoesNotExist) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --- tests ----------------------------------------------------------------------------------


def test_renderer_applies_overlay(rendered: list[Manifest]) -> None:
    """The overlay's namespace, labels, image and patches all land where kustomize puts them."""
    for doc in rendered:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == "bastion", doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "bastion"
    for workload in _workloads(rendered):
        template_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert template_labels["app.kubernetes.io/instance"] == "bastion-production"
        for container in workload["spec"]["template"]["spec"]["containers"]:
            assert container["image"] == "registry.example.com/bastion:1.0.0"
    assert _one(rendered, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 20
    # Selectors are immutable on Deployments: the overlay must not have touched them.
    deployment = _one(rendered, "Deployment")
    assert "app.kubernetes.io/instance" not in deployment["spec"]["selector"]["matchLabels"]


def test_manifests_pass_kubernetes_validate_strict(
    rendered: list[Manifest], tmp_path: Path
) -> None:
    """Every rendered object is valid, with no unknown fields, for the pinned Kubernetes version."""
    bundle = tmp_path / "rendered.yaml"
    bundle.write_text(yaml.safe_dump_all(rendered, sort_keys=False))
    base_bundle = tmp_path / "base.yaml"
    base_bundle.write_text(yaml.safe_dump_all(render_kustomization(K8S / "base"), sort_keys=False))
    result = subprocess.run(
        [
            str(VENV_BIN / "kubernetes-validate"),
            "--strict",
            "-k",
            KUBERNETES_VERSION,
            "--no-warn",
            str(bundle),
            str(base_bundle),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INFO" in result.stdout or "valid" in result.stdout.lower()
    expected_kinds = {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Job",
    }
    assert expected_kinds <= {d["kind"] for d in rendered}


@pytest.mark.asvs("V13.4.2", "V15.2.3")
def test_pods_are_hardened(rendered: list[Manifest]) -> None:
    """Web and migration pods: non-root, read-only root, no escalation, no capabilities, seccomp."""
    workloads = _workloads(rendered)
    assert {w["kind"] for w in workloads} == {"Deployment", "Job"}
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    uid_arg = re.search(r"^ARG BASTION_UID=(\d+)$", dockerfile, re.MULTILINE)
    assert uid_arg, "the Dockerfile fixes the UID with ARG BASTION_UID"
    dockerfile_uid = int(uid_arg.group(1))
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["serviceAccountName"] == "bastion", name
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, name
        pod_ctx = pod["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True, name
        assert pod_ctx["runAsUser"] == dockerfile_uid, name
        assert pod_ctx["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx.get("privileged", False) is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
            env = {e["name"]: e for e in container.get("env", [])}
            assert "BASTION_ENV" not in env  # comes from the ConfigMap, checked below
            # A read-only root needs a writable /tmp (Prometheus multiprocess files).
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
        assert pod.get("restartPolicy", "Always") == (
            "Never" if workload["kind"] == "Job" else "Always"
        )
    config = _one(rendered, "ConfigMap", "bastion-config")["data"]
    assert config["BASTION_ENV"] == "production"
    # Production refuses to start without a public origin or with mail in the request;
    # the overlay names the public host of the Ingress and the trusted hosts.
    assert config["BASTION_PUBLIC_URL"] == "https://bastion.example.com"
    assert public_url_problem(config["BASTION_PUBLIC_URL"]) is None
    assert config["BASTION_TRUSTED_HOSTS"].split(",")[0] == "bastion.example.com"
    assert config.get("BASTION_MAIL_BACKGROUND", "true") == "true"
    assert config["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    namespace = _one(rendered, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    account = _one(rendered, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_web_probes_and_rollout(rendered: list[Manifest]) -> None:
    """Probes hit /healthz and /readyz on the app port; rollout and disruption keep capacity."""
    deployment = _one(rendered, "Deployment", "bastion-web")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port == {"https": 8000}
    probes = {
        k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    trusted = _one(rendered, "ConfigMap", "bastion-config")["data"]["BASTION_TRUSTED_HOSTS"].split(
        ","
    )
    for probe in probes.values():
        assert probe["port"] == "https"
        headers = {h["name"]: h["value"] for h in probe.get("httpHeaders", [])}
        assert headers.get("Host") in trusted, "a probe with an untrusted Host would get 400"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(deployment["spec"]["selector"], pod_labels)
    hpa = _one(rendered, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "bastion-web",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = _one(rendered, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert _selects(pdb["spec"]["selector"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    service = _one(rendered, "Service", "bastion-web")
    assert _selects({"matchLabels": service["spec"]["selector"]}, pod_labels)
    assert service["spec"]["ports"][0]["targetPort"] == "https"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 5 + 25, "preStop sleep + gunicorn graceful_timeout must fit in the grace period"
    # Replicas spread over nodes and zones: one failure never takes every pod.
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    for constraint in spread:
        assert _selects(constraint["labelSelector"], pod_labels), constraint["topologyKey"]


PAGES_INGRESS = "bastion"
FILES_INGRESS = "bastion-files"
LIMIT_CONNECTIONS = "nginx.ingress.kubernetes.io/limit-connections"
NGINX_CONF = ROOT / "deploy" / "nginx" / "bastion.conf"
# The compose nginx's choice of budget: a request whose "$request_method $uri" matches this
# regex counts in the files' one, any other in the pages' one.
FILES_MAP = re.compile(r'map "\$request_method \$uri" \$bastion_file_client \{\s*"~([^"]+)"')
ROUTE_ARGUMENT = re.compile(r"<[^>]*>")
# The one route under the files' paths that is not GET or HEAD: an Ingress path cannot tell
# methods apart, so it has the files' budget on Kubernetes (see bastion-files in ingress.yaml).
FILES_BUDGET_WRITES = {("/uploads/<upload_id>/delete", "POST")}


def _ingresses(docs: list[Manifest]) -> dict[str, Manifest]:
    """The site's Ingress objects by name: one per budget of requests in flight."""
    found = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Ingress"}
    assert set(found) == {PAGES_INGRESS, FILES_INGRESS}, sorted(found)
    return found


def _host(docs: list[Manifest]) -> str:
    """The site's public host, which every Ingress serves and no other."""
    hosts: set[str] = {
        rule["host"] for ingress in _ingresses(docs).values() for rule in ingress["spec"]["rules"]
    }
    assert len(hosts) == 1, hosts
    return hosts.pop()


def _compose_budget(zone: str) -> int:
    found = re.search(rf"limit_conn {zone} (\d+);", NGINX_CONF.read_text())
    assert found, f"bastion.conf bounds requests in flight per address ({zone})"
    return int(found.group(1))


@pytest.mark.asvs("V12.2.1", "V2.4.1", "V15.2.2")
def test_ingress_tls_and_limits(rendered: list[Manifest]) -> None:
    """Each Ingress serves the trusted host over TLS only, with the upload size the app expects."""
    host = _host(rendered)
    config = _one(rendered, "ConfigMap", "bastion-config")["data"]
    assert config["BASTION_TRUSTED_HOSTS"].split(",")[0] == host
    for name, ingress in _ingresses(rendered).items():
        spec = ingress["spec"]
        assert spec["ingressClassName"] == "nginx", name
        assert spec["tls"] == [{"hosts": [host], "secretName": "bastion-tls"}], name
        annotations = ingress["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true", name
        body = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
        assert body.endswith("m")
        upload_mb = int(config["BASTION_MAX_UPLOAD_MB"])
        assert upload_mb < int(body[:-1]) <= upload_mb + 4, name
        assert not any("snippet" in key for key in annotations), (
            "configuration snippets are an injection risk"
        )
        # As behind the compose nginx: a bound on one address's requests in flight (checked
        # below), and buffering both ways, so a client reading or sending slowly costs the
        # controller a buffer and never holds a gunicorn thread (ingress-nginx streams
        # answers unless told otherwise).
        assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "on", name
        assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on", name
        for rule in spec["rules"]:
            for entry in rule["http"]["paths"]:
                if entry["path"] not in {"/readyz", "/metrics"}:
                    assert entry["backend"]["service"] == {
                        "name": "bastion-web",
                        "port": {"name": "https"},
                    }, (name, entry["path"])
    assert _ingress_backend(rendered, host, "/") == {
        "name": "bastion-web",
        "port": {"name": "https"},
    }


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_the_two_ingresses_differ_only_in_their_budget_and_their_paths(
    rendered: list[Manifest],
) -> None:
    """ingress-nginx gives each path the annotations of the Ingress that defines it: a setting
    changed on one Ingress only (TLS to the pods, buffering, timeouts, the access log) would
    hold for part of the site. Class, TLS, labels and every annotation but the connection
    limit are the same on both."""
    ingresses = _ingresses(rendered)
    pages, files = ingresses[PAGES_INGRESS], ingresses[FILES_INGRESS]

    def without_budget(ingress: Manifest) -> dict[str, str]:
        annotations = dict(ingress["metadata"]["annotations"])
        assert LIMIT_CONNECTIONS in annotations, ingress["metadata"]["name"]
        del annotations[LIMIT_CONNECTIONS]
        return annotations

    assert without_budget(pages) == without_budget(files)
    assert pages["metadata"]["labels"] == files["metadata"]["labels"]
    spec = {key: value for key, value in pages["spec"].items() if key != "rules"}
    assert spec == {key: value for key, value in files["spec"].items() if key != "rules"}
    assert [r["host"] for r in pages["spec"]["rules"]] == [
        r["host"] for r in files["spec"]["rules"]
    ]


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_the_in_flight_budgets_leave_a_pods_threads_to_others(rendered: list[Manifest]) -> None:
    """The pages' budget (pages, API calls, every write) is below one pod's threads: the
    controller balances requests over the pods regardless of who sent them, so one address's
    may all land on one pod, and must still leave it a thread for everyone else. A browser's 6
    connections over HTTP/1.1 fit. The files' budget is the compose nginx's."""
    ingresses = _ingresses(rendered)
    pages = int(ingresses[PAGES_INGRESS]["metadata"]["annotations"][LIMIT_CONNECTIONS])
    files = int(ingresses[FILES_INGRESS]["metadata"]["annotations"][LIMIT_CONNECTIONS])
    config = _one(rendered, "ConfigMap", "bastion-config")["data"]
    container = _one(rendered, "Deployment", "bastion-web")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert {"configMapRef": {"name": "bastion-config"}} in container["envFrom"]
    assert not {"GUNICORN_WORKERS", "GUNICORN_THREADS"} & {e["name"] for e in container["env"]}
    threads_per_pod = int(config["GUNICORN_WORKERS"]) * int(config["GUNICORN_THREADS"])
    assert 6 <= pages < threads_per_pod
    assert pages <= _compose_budget("bastion_conn_per_ip")
    assert files == _compose_budget("bastion_files_per_ip")
    assert files >= pages


def _sample_path(rule: str) -> str:
    """A concrete path for ``rule``: each argument replaced with one path element."""
    return ROUTE_ARGUMENT.sub("1", rule)


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_every_path_has_the_budget_compose_gives_it(
    rendered: list[Manifest], tmp_path: Path
) -> None:
    """Every request is routed by exactly one of the two Ingresses, so it counts in one
    budget; no path is left without one. For every route of the app, the Ingress is the one
    whose budget the compose nginx gives its methods: a route moved under /static/ or
    /uploads/, or a file route moved out of them, fails here. The only difference is the
    write the Ingress paths cannot tell apart from the files (FILES_BUDGET_WRITES)."""
    from tests.conftest import base_config, build_app

    host = _host(rendered)
    ingresses = _ingresses(rendered)
    file_paths = [
        entry
        for rule in ingresses[FILES_INGRESS]["spec"]["rules"]
        for entry in rule["http"]["paths"]
    ]
    assert {(e["pathType"], e["path"]) for e in file_paths} == {
        ("Prefix", "/static/"),
        ("Prefix", "/uploads/"),
    }
    # No path in both: ingress-nginx would keep one of them, the oldest Ingress's.
    page_paths = {
        (entry["pathType"], entry["path"].rstrip("/") or "/")
        for rule in ingresses[PAGES_INGRESS]["spec"]["rules"]
        for entry in rule["http"]["paths"]
    }
    assert ("Prefix", "/") in page_paths, "every path not a file's has the pages' budget"
    assert not page_paths & {(e["pathType"], e["path"].rstrip("/")) for e in file_paths}

    conf_map = FILES_MAP.search(NGINX_CONF.read_text())
    assert conf_map, "bastion.conf chooses the files' budget by method and path"
    compose_files = re.compile(conf_map.group(1))
    for entry in file_paths:
        assert compose_files.match(f"GET {entry['path']}x"), entry["path"]

    app = build_app(base_config(tmp_path, f"sqlite:///{tmp_path / 'bastion.db'}"))
    differences: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        path = _sample_path(rule.rule)
        ingress, _ = _ingress_route(rendered, host, path)
        # OPTIONS: Flask answers it itself, for every rule.
        for method in sorted((rule.methods or set()) - {"OPTIONS"}):
            expected = FILES_INGRESS if compose_files.match(f"{method} {path}") else PAGES_INGRESS
            if ingress != expected:
                differences.add((rule.rule, method))
    assert differences == FILES_BUDGET_WRITES
    for path in ("/", "/static", "/uploads", "/staticx/1", "/uploadsx", "/readyz", "/nowhere"):
        _ingress_route(rendered, host, path)  # routed by exactly one Ingress
    assert _ingress_route(rendered, host, "/staticx/1")[0] == PAGES_INGRESS


def _ingress_route(docs: list[Manifest], host: str, path: str) -> tuple[str, dict[str, Any]]:
    """The Ingress (by name) and Service backend a request for ``host`` and ``path`` reaches
    through the Ingress objects, by the Ingress API's rules (which every controller follows
    for Exact and Prefix paths): the longest matching path wins, Exact before Prefix when they
    are as long. Two paths that tie would leave the choice to the controller: refused."""
    matches: list[tuple[int, bool, str, dict[str, Any]]] = []
    for ingress in (d for d in docs if d["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            if rule.get("host", host) != host:
                continue
            for entry in rule["http"]["paths"]:
                kind, rule_path = entry["pathType"], entry["path"]
                assert kind in {"Exact", "Prefix"}, (
                    f"{rule_path}: ImplementationSpecific matching depends on the controller"
                )
                prefix = rule_path.rstrip("/")  # Prefix matches whole path elements
                if kind == "Exact":
                    hit = path == rule_path
                else:
                    hit = path == prefix or path.startswith(prefix + "/")
                if hit:
                    matches.append(
                        (
                            len(prefix) if kind == "Prefix" else len(rule_path),
                            kind == "Exact",
                            ingress["metadata"]["name"],
                            entry["backend"]["service"],
                        )
                    )
    assert matches, f"no Ingress path matches {path}"
    best = max(match[:2] for match in matches)
    winners = [match for match in matches if match[:2] == best]
    assert len(winners) == 1, f"{path}: matched as well by {[m[2] for m in winners]}"
    return winners[0][2], winners[0][3]


def _ingress_backend(docs: list[Manifest], host: str, path: str) -> dict[str, Any]:
    """The Service backend a request for ``host`` and ``path`` reaches (``_ingress_route``)."""
    return _ingress_route(docs, host, path)[1]


@pytest.mark.asvs("V13.4.5")
def test_ingress_never_forwards_readiness_or_metrics_to_the_app(
    rendered: list[Manifest],
) -> None:
    """As behind the compose nginx, /readyz (whether PostgreSQL and Redis are up: the moment
    rate limits fall back to per-process ones) and /metrics are answered at the edge: they
    lead to a Service with no pods, so the app never sees them from outside."""
    host = _host(rendered)
    services = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Service"}
    for path in ("/readyz", "/metrics"):
        backend = _ingress_backend(rendered, host, path)
        assert backend["name"] != "bastion-web", f"{path} is routed to the app"
        service = services[backend["name"]]
        assert "selector" not in service["spec"], f"{path}: its Service must have no pods"
        assert service["spec"]["type"] == "ClusterIP"
        ports = {port.get("name") for port in service["spec"]["ports"]}
        assert backend["port"].get("name") in ports, backend
    # Every other path reaches the app, which answers 404 to /readyz/ and /readyzz itself.
    for path in ("/", "/healthz", "/auth/login", "/readyz/", "/readyzz", "/metrics/x"):
        assert _ingress_backend(rendered, host, path)["name"] == "bastion-web", path


@pytest.mark.asvs("V16.2.5")
def test_ingress_writes_no_access_log_line_with_a_link_or_token(
    rendered: list[Manifest],
) -> None:
    """ingress-nginx's default access log format writes the request line whole
    (``"$request"``): a reset, confirmation, setup or email-change link and a token in a path
    would be live credentials in the cluster's logs. An Ingress cannot give the controller a
    redacting format, so its access log is off for every Ingress of the site; the app writes
    a redacted line for each request itself (docs/deployment.md#logs)."""
    from bastion.observability.redaction import LINK_PREFIXES

    host = _host(rendered)
    paths = [f"{prefix}SECRET" for prefix in LINK_PREFIXES]
    paths += ["/api/v1/tokens/bst_SECRET", "/api/v1/x/eyJh.eyJi.SECRET", "/readyz"]
    for path in paths:
        _ingress_backend(rendered, host, path)  # routed by one of the Ingress objects below
    for ingress in (d for d in rendered if d["kind"] == "Ingress"):
        name = ingress["metadata"]["name"]
        annotations = ingress["metadata"].get("annotations", {})
        assert annotations.get("nginx.ingress.kubernetes.io/enable-access-log") == "false", name


@pytest.mark.asvs("V13.3.1", "V13.3.2")
def test_secrets_are_referenced_never_inlined(rendered: list[Manifest]) -> None:
    """No Secret with data in the repository; pods read secrets as read-only files."""
    for path in sorted(K8S.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Secret":
                assert not doc.get("data") and not doc.get("stringData"), f"{path} inlines a Secret"
    secret_words = (
        "SECRET",
        "PASSWORD",
        "TOKEN",
        "DATABASE_URL",
        "REDIS_URL",
        "MAIL_URL",
        "DSN",
        "KEY",
    )
    for doc in rendered:
        if doc["kind"] == "ConfigMap":
            for key in doc["data"]:
                assert not any(w in key for w in secret_words), (
                    f"secret-looking key {key} in a ConfigMap"
                )
    for workload in _workloads(rendered):
        pod = workload["spec"]["template"]["spec"]
        secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        assert secret_volumes, workload["metadata"]["name"]
        for volume in secret_volumes.values():
            assert volume["defaultMode"] & 0o007 == 0, "secret files must not be world-readable"
        for container in pod["containers"]:
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            for name in secret_volumes:
                assert mounts[name]["readOnly"] is True
            for env in container.get("env", []):
                if any(w in env["name"] for w in secret_words):
                    assert env["name"].endswith("_FILE"), f"{env['name']} must be read from a file"
                    assert env["value"].startswith("/run/secrets/")
                    mount_dirs = [m["mountPath"] for n, m in mounts.items() if n in secret_volumes]
                    assert any(env["value"].startswith(d + "/") for d in mount_dirs), env
                assert "valueFrom" not in env or "secretKeyRef" not in env["valueFrom"]


def test_app_containers_read_the_mail_relay_from_a_mounted_secret(
    rendered: list[Manifest],
) -> None:
    """Production refuses to start without BASTION_MAIL_URL (mail never goes to the outbox):
    the web pods and the migration job (which starts the app too) read it from a file that
    their Secret volume really provides."""
    for workload in _workloads(rendered):
        pod = workload["spec"]["template"]["spec"]
        files = {
            f"{mount['mountPath']}/{item['path']}"
            for container in pod["containers"]
            for mount in container["volumeMounts"]
            for volume in pod["volumes"]
            if volume["name"] == mount["name"] and "secret" in volume
            for item in volume["secret"].get("items", [])
        }
        for container in pod["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("BASTION_MAIL_URL_FILE") in files, workload["metadata"]["name"]


def _policies(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] == "NetworkPolicy"]


def _flows(
    docs: list[Manifest], pod_labels: dict[str, str], direction: str
) -> list[tuple[str, str, int, str]]:
    """All (namespace selector, pod selector, port, protocol) allowed for pods with these labels."""
    key = "ingress" if direction == "Ingress" else "egress"
    peer_key = "from" if key == "ingress" else "to"
    flows: list[tuple[str, str, int, str]] = []
    for policy in _policies(docs):
        spec = policy["spec"]
        if direction not in spec["policyTypes"] or not _selects(spec["podSelector"], pod_labels):
            continue
        for rule in spec.get(key, []):
            peers = rule.get(peer_key)
            ports = rule.get("ports")
            assert peers, f"{policy['metadata']['name']}: a rule without peers allows everyone"
            assert ports, f"{policy['metadata']['name']}: a rule without ports allows every port"
            for peer in peers:
                assert "ipBlock" not in peer, f"{policy['metadata']['name']}: unexpected ipBlock"
                ns = yaml.safe_dump(peer.get("namespaceSelector"), sort_keys=True).strip()
                pod = yaml.safe_dump(peer.get("podSelector"), sort_keys=True).strip()
                for port in ports:
                    flows.append((ns, pod, port["port"], port["protocol"]))
    return flows


def _sel(labels: dict[str, str] | None) -> str:
    return yaml.safe_dump(
        None if labels is None else {"matchLabels": labels}, sort_keys=True
    ).strip()


@pytest.mark.asvs("V13.2.4", "V13.2.5")
def test_network_policy_allows_only_the_needed_flows(rendered: list[Manifest]) -> None:
    """Default deny; web pods reachable only from ingress-nginx (and Prometheus) on 8000;
    app pods may reach only PostgreSQL, Redis and DNS."""
    deny = _one(rendered, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    web = _one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    migrate = _one(rendered, "Job")["spec"]["template"]["metadata"]["labels"]
    ingress_nginx = _sel({"kubernetes.io/metadata.name": "ingress-nginx"})
    monitoring = _sel({"kubernetes.io/metadata.name": "monitoring"})
    assert sorted(_flows(rendered, web, "Ingress")) == sorted(
        [
            (ingress_nginx, _sel({"app.kubernetes.io/name": "ingress-nginx"}), 8000, "TCP"),
            (monitoring, _sel({"app.kubernetes.io/name": "prometheus"}), 8000, "TCP"),
        ]
    )
    assert _flows(rendered, migrate, "Ingress") == [], "the migration job accepts no connections"

    kube_system = _sel({"kubernetes.io/metadata.name": "kube-system"})
    expected_egress = sorted(
        [
            (_sel(None), _sel({"app.kubernetes.io/name": "postgresql"}), 5432, "TCP"),
            (_sel(None), _sel({"app.kubernetes.io/name": "redis"}), 6379, "TCP"),
            (kube_system, _sel({"k8s-app": "kube-dns"}), 53, "UDP"),
            (kube_system, _sel({"k8s-app": "kube-dns"}), 53, "TCP"),
        ]
    )
    assert sorted(_flows(rendered, web, "Egress")) == expected_egress
    assert sorted(_flows(rendered, migrate, "Egress")) == expected_egress

    # Co-located data stores accept Bastion's pods and nothing else.
    for store, port in (("postgresql", 5432), ("redis", 6379)):
        flows = _flows(rendered, {"app.kubernetes.io/name": store}, "Ingress")
        sources = {(ns, pod) for ns, pod, _, _ in flows}
        assert sources == {(_sel(None), _sel({"app.kubernetes.io/name": "bastion"}))}
        assert port in {p for _, _, p, _ in flows}
    # Nothing else in the namespace gets any flow beyond the default deny.
    assert _flows(rendered, {"app.kubernetes.io/name": "something-else"}, "Ingress") == []
    assert _flows(rendered, {"app.kubernetes.io/name": "something-else"}, "Egress") == []


def test_migration_job_runs_flask_db_upgrade(rendered: list[Manifest]) -> None:
    """The Job runs the migrations once, with the owner database URL, and cleans itself up."""
    job = _one(rendered, "Job", "bastion-migrate")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["flask", "--app", "bastion", "db", "upgrade"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BASTION_DATABASE_URL_FILE"].startswith("/run/secrets/bastion-db-owner/")
    assert job["spec"]["backoffLimit"] <= 3
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["activeDeadlineSeconds"] > 0
