"""Prometheus rules and config, Grafana dashboard: well-formed PromQL over exported metrics."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRICS_FILE = DEPLOY / "metrics.txt"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "bastion.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "bastion.yaml"
COMPOSE = DEPLOY / "compose.yaml"

# Series every Prometheus has without the app exporting them.
STANDARD_METRICS = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# --- a small PromQL parser ------------------------------------------------------------------
# No PromQL parser is installed for Python, so this one covers the language the rules and the
# dashboard use: selectors with matchers, range and subquery selectors, offset, functions and
# aggregations with their argument types, binary operators with bool/on/ignoring/group_*.
# It rejects what Prometheus rejects in that subset (unbalanced brackets, unknown functions,
# rate() of an instant vector, bad durations ...) and reports every metric name it reads.

AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
AGG_WITH_PARAM = {"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
RANGE_FUNCTIONS = {
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "predict_linear",
    "holt_winters",
    "double_exponential_smoothing",
    "absent_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
    "mad_over_time",
}
# Index of the range-vector argument for range functions that take a parameter first.
RANGE_ARG_INDEX = {"quantile_over_time": 1}
INSTANT_FUNCTIONS = {
    "abs",
    "absent",
    "ceil",
    "clamp",
    "clamp_max",
    "clamp_min",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "hour",
    "label_join",
    "label_replace",
    "ln",
    "log2",
    "log10",
    "minute",
    "month",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sort_by_label",
    "sort_by_label_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "year",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "cos",
    "cosh",
    "sin",
    "sinh",
    "tan",
    "tanh",
    "deg",
    "rad",
    "pi",
}
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
}
PRECEDENCE = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    "<=": 3,
    "<": 3,
    ">=": 3,
    ">": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "atan2": 5,
    "^": 6,
}
COMPARISONS = {"==", "!=", "<=", "<", ">=", ">"}
SET_OPERATORS = {"and", "or", "unless"}

TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![a-zA-Z0-9_]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|=~|!~|<=|>=|[-+*/%^<>=,(){}\[\]@:])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    """The expression is not valid PromQL (in the subset this parser knows)."""


@dataclass
class Token:
    kind: str
    text: str
    pos: int


def tokenize(expr: str) -> list[Token]:
    """Split a PromQL expression into tokens; reject any character PromQL does not have."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(expr):
        match = TOKEN_RE.match(expr, pos)
        if not match:
            raise PromQLError(f"unexpected character {expr[pos]!r} at {pos}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "", pos))
    return tokens


@dataclass
class Parser:
    """Recursive-descent PromQL parser returning the value type of each sub-expression."""

    tokens: list[Token]
    index: int = 0
    metrics: set[str] = field(default_factory=set)

    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        tok = self.tok
        if (text is not None and tok.text != text) or (kind is not None and tok.kind != kind):
            raise PromQLError(f"expected {text or kind!r} at {tok.pos}, found {tok.text!r}")
        self.index += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind in {"op", "ident"}:
            self.index += 1
            return True
        return False

    def parse(self) -> str:
        kind = self.expression()
        self.take(kind="eof")
        return kind

    # Binary operators by precedence climbing (`^` is right-associative).
    # Returns the value type: "scalar", "vector", "matrix" or "string".
    def expression(self, min_prec: int = 1) -> str:
        left = self.unary()
        while True:
            op = self.tok.text if self.tok.kind in {"op", "ident"} else ""
            prec = PRECEDENCE.get(op, 0)
            if prec == 0 or prec < min_prec:
                return left
            self.index += 1
            if self.accept("bool") and op not in COMPARISONS:
                raise PromQLError("bool is only allowed after a comparison")
            if self.tok.text in {"on", "ignoring"}:
                self.index += 1
                self.label_list()
                if self.tok.text in {"group_left", "group_right"}:
                    self.index += 1
                    if self.tok.text == "(":
                        self.label_list()
            right = self.expression(prec if op == "^" else prec + 1)
            for side in (left, right):
                if side in {"matrix", "string"}:
                    raise PromQLError(f"operator {op} needs instant vectors or scalars, got {side}")
            if op in SET_OPERATORS and "scalar" in (left, right):
                raise PromQLError(f"set operator {op} needs vectors on both sides")
            left = "scalar" if left == right == "scalar" else "vector"

    def unary(self) -> str:
        if self.tok.text in {"-", "+"} and self.tok.kind == "op":
            self.index += 1
            kind = self.unary()
            if kind not in {"scalar", "vector"}:
                raise PromQLError("unary minus needs a scalar or vector")
            return kind
        return self.postfix(self.primary())

    def postfix(self, kind: str) -> str:
        while True:
            if self.tok.text == "[":
                self.index += 1
                self.duration()
                if self.accept(":"):
                    if self.tok.kind == "duration":
                        self.duration()
                    if kind != "vector":
                        raise PromQLError("a subquery needs an instant vector")
                elif kind != "selector":
                    raise PromQLError("a range needs a plain vector selector (or use a subquery)")
                self.take("]")
                kind = "matrix"
            elif self.tok.text == "offset":
                self.index += 1
                self.accept("-")
                self.duration()
            elif self.tok.text == "@":
                self.index += 1
                if not (self.accept("start") or self.accept("end")):
                    self.take(kind="number")
                    if self.accept("("):
                        self.take(")")
            else:
                return "vector" if kind == "selector" else kind

    def duration(self) -> None:
        tok = self.take(kind="duration")
        units = re.findall(r"\d+(ms|[smhdwy])", tok.text)
        order = ["y", "w", "d", "h", "m", "s", "ms"]
        if [order.index(u) for u in units] != sorted(order.index(u) for u in set(units)):
            raise PromQLError(f"units out of order in duration {tok.text!r}")

    def label_list(self) -> list[str]:
        self.take("(")
        labels: list[str] = []
        while self.tok.text != ")":
            labels.append(self.take(kind="ident").text)
            if not self.accept(","):
                break
        self.take(")")
        return labels

    def matchers(self) -> dict[str, str]:
        self.take("{")
        found: dict[str, str] = {}
        while self.tok.text != "}":
            label = self.take(kind="ident").text
            op = self.take(kind="op").text
            if op not in {"=", "!=", "=~", "!~"}:
                raise PromQLError(f"bad matcher operator {op!r}")
            value = self.take(kind="string").text
            if op in {"=~", "!~"}:
                try:
                    re.compile(value[1:-1].replace("\\\\", "\\"))
                except re.error as exc:
                    raise PromQLError(f"bad regex {value}: {exc}") from exc
            found[label] = value[1:-1]
            if not self.accept(","):
                break
        self.take("}")
        return found

    def call_args(self) -> list[str]:
        self.take("(")
        args: list[str] = []
        while self.tok.text != ")":
            args.append(self.expression())
            if not self.accept(","):
                break
        self.take(")")
        return args

    def primary(self) -> str:
        tok = self.tok
        if tok.kind == "number":
            self.index += 1
            return "scalar"
        if tok.kind == "string":
            self.index += 1
            return "string"
        if tok.text == "(":
            self.index += 1
            kind = self.expression()
            self.take(")")
            return kind
        if tok.text == "{":
            labels = self.matchers()
            if "__name__" in labels:
                self.metrics.add(labels["__name__"])
            elif not labels:
                raise PromQLError("a selector needs a metric name or a matcher")
            return "selector"
        if tok.kind != "ident":
            raise PromQLError(f"unexpected {tok.text!r} at {tok.pos}")
        name = tok.text
        self.index += 1
        if name.lower() in {"inf", "nan"}:
            return "scalar"
        if name in AGGREGATIONS:
            grouped = False
            if self.tok.text in {"by", "without"}:
                self.index += 1
                self.label_list()
                grouped = True
            args = self.call_args()
            if self.tok.text in {"by", "without"}:
                if grouped:
                    raise PromQLError("grouping given twice")
                self.index += 1
                self.label_list()
            expected = 2 if name in AGG_WITH_PARAM else 1
            if len(args) != expected or args[-1] != "vector":
                raise PromQLError(
                    f"{name}() takes {expected} argument(s) ending in an instant vector"
                )
            return "vector"
        if name in RANGE_FUNCTIONS or name in INSTANT_FUNCTIONS:
            if self.tok.text != "(":
                raise PromQLError(f"{name} is a function and needs arguments")
            args = self.call_args()
            if name in RANGE_FUNCTIONS:
                at = RANGE_ARG_INDEX.get(name, 0)
                if len(args) <= at or args[at] != "matrix":
                    raise PromQLError(f"{name}() needs a range vector, e.g. {name}(x[5m])")
            elif "matrix" in args:
                raise PromQLError(f"{name}() takes no range vector")
            if name == "histogram_quantile" and args != ["scalar", "vector"]:
                raise PromQLError("histogram_quantile(φ scalar, buckets vector)")
            return "scalar" if name in {"scalar", "time", "pi"} else "vector"
        if name in KEYWORDS:
            raise PromQLError(f"keyword {name!r} in the wrong place")
        if self.tok.text == "(":
            raise PromQLError(f"unknown function {name}()")
        self.metrics.add(name)
        if self.tok.text == "{":
            self.matchers()
        return "selector"


GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def parse_promql(expr: str) -> set[str]:
    """Parse ``expr`` (Grafana interval variables allowed); return the metric names it reads."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise PromQLError(f"unknown template variable in {expr!r}")
    parser = Parser(tokenize(expr))
    parser.parse()
    return parser.metrics


def exported_metrics() -> set[str]:
    """Metric family names listed in deploy/metrics.txt."""
    return {line.strip() for line in METRICS_FILE.read_text().splitlines() if line.strip()}


def family_of(name: str, families: set[str]) -> str | None:
    """The exported family a series name belongs to (histograms add _bucket/_sum/_count)."""
    if name in families or name in STANDARD_METRICS:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return None


# --- the parser itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        'sum(rate(requests_total{status=~"5.."}[5m])) / sum(rate(requests_total[5m])) > 0.02',
        "histogram_quantile(0.99, sum by (le) (rate(duration_seconds_bucket[5m]))) > 1",
        'up{job="bastion"} == 0',
        "sum(increase(x[5m])) > 0 or sum(rate(x[1d] offset 1d)) > bool 2",
        "max_over_time(rate(x[5m])[1h:1m])",
        "-sum without (instance) (x) ^ 2 ^ 3",
        "topk(5, sum by (endpoint) (rate(x[$__rate_interval])))",
        "a / on (job) group_left (instance) b",
    ],
)
def test_parser_accepts_valid_promql(expr: str) -> None:
    """Real PromQL parses (so the checks below are not vacuous)."""
    parse_promql(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "rate(x)",  # rate of an instant vector
        "sum(rate(x[5m])",  # unbalanced
        'x{status="5xx"',  # unclosed matcher
        "x[5m] > 1",  # range vector in a comparison
        "histogram_quantile(x, y)",  # quantile must be a scalar
        "rates(x[5m])",  # unknown function
        "sum(x[5m])",  # aggregation over a range vector
        "x[5x]",  # bad duration
        "x[1m1h]",  # units out of order
        "x > bool",  # dangling operator
        'x{status=~"5(.."}',  # invalid regex
        "x and 1",  # set operator with a scalar
        "$unknown",  # unknown dashboard variable
    ],
)
def test_parser_rejects_invalid_promql(expr: str) -> None:
    """Mistakes Prometheus would refuse are refused here too."""
    with pytest.raises(PromQLError):
        parse_promql(expr)


# --- metrics.txt ----------------------------------------------------------------------------


def test_metrics_file_lists_family_names() -> None:
    """One valid, unique, bastion_-prefixed family name per line, without histogram suffixes."""
    lines = METRICS_FILE.read_text().splitlines()
    names = [line.strip() for line in lines if line.strip()]
    assert len(names) == len(set(names)) >= 10
    for name in names:
        assert re.fullmatch(r"bastion_[a-z0-9_]+", name), name
        assert not name.endswith(("_bucket", "_sum", "_count", "_created")), name
    assert "bastion_http_requests_total" in names
    assert "bastion_http_request_duration_seconds" in names


# --- alert rules ----------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


DURATION = re.compile(r"^(\d+(ms|[smhdwy]))+$")


def test_alert_rules_are_well_formed() -> None:
    """Groups hold alerting rules with name, PromQL, duration, severity and annotations."""
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    group_names = [g["name"] for g in document["groups"]]
    assert len(group_names) == len(set(group_names))
    names: list[str] = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules", "labels"}
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
            names.append(rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert {"summary", "description"} <= set(rule["annotations"])
            for text in rule["annotations"].values():
                # Go templates: balanced, and only the variables Prometheus provides.
                assert text.count("{{") == text.count("}}"), text
                for var in re.findall(r"\$(\w+)", text):
                    assert var in {"value", "labels", "externalLabels"}, var
    assert len(names) == len(set(names)), "alert names must be unique"


def test_alert_expressions_parse_and_use_exported_metrics() -> None:
    """Every alert is valid PromQL over metrics the app exports (deploy/metrics.txt) or `up`."""
    families = exported_metrics()
    for rule in _rules():
        try:
            used = parse_promql(rule["expr"])
        except PromQLError as exc:
            pytest.fail(f"{rule['alert']}: {exc}")
        assert used, rule["alert"]
        for name in used:
            assert family_of(name, families), f"{rule['alert']} uses unknown metric {name}"


def test_required_alerts_exist() -> None:
    """The five alerts operators rely on, with their thresholds."""
    rules = {r["alert"]: r for r in _rules()}
    compact = {name: re.sub(r"\s+", "", r["expr"]) for name, r in rules.items()}

    error = rules["BastionHighErrorRate"]
    assert 'status=~"5.."' in compact["BastionHighErrorRate"]
    assert compact["BastionHighErrorRate"].endswith(">0.02") and error["for"] == "10m"

    latency = compact["BastionHighLatencyP99"]
    assert latency.startswith("histogram_quantile(0.99,") and latency.endswith(">1")
    assert "bastion_http_request_duration_seconds_bucket" in latency
    assert "by(le)" in latency

    assert "bastion_login_failures_total" in compact["BastionFailedLoginSpike"]
    reuse = compact["BastionRefreshTokenReuse"]
    assert "bastion_token_reuse_detected_total" in reuse and reuse.endswith(">0")
    assert rules["BastionRefreshTokenReuse"]["labels"]["severity"] == "critical"
    assert compact["BastionTargetDown"] == 'up{job="bastion"}==0'


def test_prometheus_config_scrapes_the_app_with_the_token_file() -> None:
    """prometheus.yml uses only known settings, loads the rules, and authenticates with a file."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert set(config) <= {"global", "rule_files", "scrape_configs", "alerting", "remote_write"}
    assert set(config["global"]) <= {
        "scrape_interval",
        "scrape_timeout",
        "evaluation_interval",
        "external_labels",
    }
    compose = yaml.safe_load(COMPOSE.read_text())
    prom = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"] if v.startswith("./")}
    for rule_file in config["rule_files"]:
        assert (DEPLOY / mounts[rule_file]).resolve() == ALERTS.resolve()

    known = {
        "job_name",
        "metrics_path",
        "scheme",
        "scrape_interval",
        "scrape_timeout",
        "authorization",
        "follow_redirects",
        "static_configs",
        "dns_sd_configs",
        "tls_config",
        "relabel_configs",
        "metric_relabel_configs",
        "honor_labels",
    }
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job in jobs.values():
        assert set(job) <= known, set(job) - known
    bastion = jobs["bastion"]
    assert bastion["metrics_path"] == "/metrics"
    assert bastion["authorization"]["type"] == "Bearer"
    assert "credentials" not in bastion["authorization"], "the token is never inline"
    token_file = bastion["authorization"]["credentials_file"]
    assert token_file == "/run/secrets/metrics_token"
    assert "metrics_token" in prom["secrets"]
    # By service name (a Host the app trusts), not by the addresses DNS discovery returns;
    # tests/deploy/test_hostile_deploy.py sends the app the scrape Prometheus makes.
    assert "dns_sd_configs" not in bastion
    (static,) = bastion["static_configs"]
    assert static["targets"] == ["app:8000"]
    # Alerts filter on the job name configured here.
    for rule in _rules():
        for job_name in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job_name in jobs


# --- Grafana --------------------------------------------------------------------------------


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return [p for p in panels if p.get("type") != "row"]


def test_grafana_provisioning_matches_compose() -> None:
    """The datasource points at the compose Prometheus; dashboards load from the mounted folder."""
    datasources = yaml.safe_load(DATASOURCES.read_text())
    assert datasources["apiVersion"] == 1
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy"
    assert ds["url"] == "https://prometheus:9090"
    compose = yaml.safe_load(COMPOSE.read_text())
    assert "prometheus" in compose["services"]
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    folder = mounts[provider["options"]["path"]]
    assert (DEPLOY / folder).resolve() == DASHBOARD.parent.resolve()
    assert (DEPLOY / mounts["/etc/grafana/provisioning"]).resolve() == DATASOURCES.parents[
        1
    ].resolve()
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]


def test_dashboard_panels_query_exported_metrics() -> None:
    """Every panel has the provisioned datasource and valid queries over exported metrics, and
    together they chart every metric in deploy/metrics.txt."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    families = exported_metrics()
    charted: set[str] = set()
    panels = _panels(dashboard)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
            try:
                used = parse_promql(target["expr"])
            except PromQLError as exc:
                pytest.fail(f"panel {panel['title']!r}: {exc}")
            for name in used:
                family = family_of(name, families)
                assert family, f"panel {panel['title']!r} uses unknown metric {name}"
                charted.add(family)
    assert charted >= families, f"metrics without a panel: {families - charted}"

    # Panels tile the 24-column grid without overlapping.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area

    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("requests", "error", "p99", "login", "429", "csrf", "csp", "upload", "reuse"):
        assert topic in titles, topic
