"""The single-host stack in docker-compose.yml: valid, pinned, wired, and configured with
real settings.

No container engine runs here, so these tests check what can be checked without one:
docker-compose validates the file, the images are pinned to the versions the tests run,
every environment variable a service gets names a real field of that service's settings
class (or, with ``_FILE``, a compose secret holding one), the settings build from exactly
that environment, every service has a health check, a restart policy and its state in a
named volume, and only the ports an operator needs are published. tests/deploy/
test_stack.py runs the services' commands and health checks against real servers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from dispatch.settings import DispatchSettings
from edge.settings import EdgeSettings, GatewaySettings
from estate.model import SAMPLE_ESTATE, load_estate
from ingest.settings import IngestSettings
from launcher import cli
from launcher.secret_files import apply_secret_files
from launcher.stack_secrets import STACK_SERVICES, write_stack_secrets

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# The real subcommands of the `estate` command line.
SUBCOMMANDS = {c.name or (c.callback.__name__ if c.callback else "")
               for c in cli.app.registered_commands}

# service -> (settings class, env prefix, nested delimiter, subcommand it must run)
APP_SERVICES: dict[str, tuple[type[BaseSettings], str, str, str]] = {
    "ingest": (IngestSettings, "INGEST_", "__", "ingest"),
    "dispatch": (DispatchSettings, "DISPATCH_", "__", "dispatch"),
    "web": (DispatchSettings, "DISPATCH_", "__", "web"),
    "simulator": (EdgeSettings, "EDGE_", "__", "simulate"),
    "gateway": (GatewaySettings, "GATEWAY_", "__", "edge"),
}
# Always started (the rest are profiles: gateway "modbus", prometheus and grafana
# "monitoring").
DEFAULT_SERVICES = {"setup", "mosquitto", "influxdb", "postgres", "ingest", "dispatch", "web",
                    "simulator"}
PROFILES = {"gateway": "modbus", "prometheus": "monitoring", "grafana": "monitoring"}

# The image each server runs, and how to read the version the tests run from the binary
# here: the compose stack must be the stack the tests prove.
PINNED = {
    "mosquitto": ("eclipse-mosquitto:2.0.11-openssl", ["mosquitto", "-h"], "2.0.11"),
    "postgres": ("postgres:15.18-bookworm",
                 ["/usr/lib/postgresql/15/bin/postgres", "--version"], "15.18"),
    # The last InfluxDB 1.6 image is 1.6.6; Debian ships 1.6.7~rc0 of the same series (same
    # API, same storage engine): docs/deploy.md.
    "influxdb": ("influxdb:1.6.6", ["influxd", "version"], "v1.6."),
    "prometheus": ("prom/prometheus:v2.42.0", ["promtool", "--version"], "2.42.0"),
}


# --- helpers -------------------------------------------------------------------------------

def docker_compose() -> str:
    """The docker-compose binary; its absence is a broken setup, not a reason to skip."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed, so docker-compose.yml cannot be "
                    "validated; run `make deps` to install it")
    return found


def compose_config(compose_file: Path, *, profiles: tuple[str, ...] = ("modbus", "monitoring"),
                   ) -> subprocess.CompletedProcess[str]:
    """Run `docker-compose config` on a file, relative paths resolved from the project root."""
    options = [arg for p in profiles for arg in ("--profile", p)]
    return subprocess.run(
        [docker_compose(), "--project-directory", str(ROOT), *options, "-f",
         str(compose_file), "config"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )


def resolved_services() -> dict[str, dict[str, Any]]:
    """The services as docker-compose resolves them (anchors merged, every profile on)."""
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    services: dict[str, dict[str, Any]] = yaml.safe_load(result.stdout)["services"]
    return services


def secret_names(service: dict[str, Any]) -> set[str]:
    return {s["source"] if isinstance(s, dict) else str(s)
            for s in service.get("secrets") or []}


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, published port, container port) of each published port."""
    found = []
    for spec in service.get("ports") or []:
        if isinstance(spec, dict):
            found.append((spec.get("host_ip", "0.0.0.0"), int(spec["published"]),
                          int(spec["target"])))
            continue
        parts = str(spec).split("/")[0].split(":")
        host = parts[0] if len(parts) == 3 else "0.0.0.0"
        found.append((host, int(parts[-2]), int(parts[-1])))
    return found


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, list or mapping form, as a name -> string mapping."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) for item in env]
        assert all(len(p) == 2 for p in pairs), f"environment entries without '=': {env}"
        return dict(pairs)
    assert isinstance(env, dict), f"environment must be a list or a mapping, not {env!r}"
    for name, value in env.items():
        assert value is not None, f"{name} has no value; the stack must not inherit it"
        assert isinstance(value, str), (
            f"{name}: {value!r} is a YAML {type(value).__name__}; quote it so compose and the "
            "settings see the same string")
    return dict(env)


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """A service's `depends_on` as dependency -> condition."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started")
            for name, spec in deps.items()}


def nested_model(field: FieldInfo) -> type[BaseModel] | None:
    """The pydantic model a field holds (also through `X | None`), or None for a plain value."""
    annotation = field.annotation
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if models else None


def resolve_env_var(settings_cls: type[BaseSettings], prefix: str, delimiter: str,
                    name: str) -> list[str]:
    """Map an environment variable to the path of the settings field it sets.

    ``resolve_env_var(IngestSettings, "INGEST_", "__", "INGEST_MQTT__HOST")`` returns
    ``["mqtt", "host"]`` after checking that ``mqtt`` is a field of IngestSettings holding a
    model and ``host`` is a field of that model. Any level that does not exist fails.
    """
    config = settings_cls.model_config
    assert config.get("env_prefix") == prefix, (
        f"{settings_cls.__name__} reads prefix {config.get('env_prefix')!r}, not {prefix!r}")
    assert config.get("env_nested_delimiter") == delimiter, (
        f"{settings_cls.__name__} nests with {config.get('env_nested_delimiter')!r}, "
        f"not {delimiter!r}")
    case_sensitive = bool(config.get("case_sensitive", False))

    def norm(s: str) -> str:
        return s if case_sensitive else s.lower()

    assert norm(name).startswith(norm(prefix)), f"{name} lacks the prefix {prefix}"
    parts = name[len(prefix):].split(delimiter)
    model: type[BaseModel] | None = settings_cls
    path: list[str] = []
    for part in parts:
        assert model is not None, (
            f"{name}: {'.'.join(path)} is a plain value, it has no field {part!r}")
        fields = {norm(k): k for k in model.model_fields}
        assert norm(part) in fields, (
            f"{name}: {model.__name__} has no field {part.lower()!r} "
            f"(it has {sorted(model.model_fields)})")
        field_name = fields[norm(part)]
        path.append(field_name)
        model = nested_model(model.model_fields[field_name])
    return path


def field_at(settings: BaseModel, path: list[str]) -> tuple[Any, FieldInfo]:
    """The value and the field definition at a path like ["mqtt", "host"]."""
    value: Any = settings
    field: FieldInfo | None = None
    for name in path:
        field = type(value).model_fields[name]
        value = getattr(value, name)
    assert field is not None
    return value, field


def mosquitto_directives(path: Path) -> dict[str, list[str]]:
    """Each directive of a Mosquitto config file with its values, comments left out."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            found.setdefault(name, []).append(value.strip())
    return found


def placeholder_secrets(service: dict[str, Any], env: dict[str, str], tmp: Path,
                        ) -> dict[str, str]:
    """The service's environment with each ``/run/secrets/X`` path swapped for a file of
    placeholder text, and ``X_SECRET_FILE`` variables read as the image's command does."""
    swapped = {}
    for name, value in env.items():
        if value.startswith("/run/secrets/"):
            secret = value.removeprefix("/run/secrets/")
            assert secret in secret_names(service), f"{name} names {secret}, not mounted"
            path = tmp / secret
            path.write_text(f"placeholder-{secret}\n" if secret != "registry_url"
                            else "postgresql+psycopg://estate:pw@postgres:5432/registry\n")
            value = str(path)
        swapped[name] = value
    apply_secret_files(swapped)
    return swapped


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return resolved_services()


# --- docker-compose validates the file, and would reject a broken one ------------------------

def test_docker_compose_validates_the_file_with_and_without_profiles() -> None:
    plain = compose_config(COMPOSE_FILE, profiles=())
    assert plain.returncode == 0, f"docker-compose config failed:\n{plain.stderr}"
    assert set(yaml.safe_load(plain.stdout)["services"]) >= DEFAULT_SERVICES
    assert set(resolved_services()) == DEFAULT_SERVICES | set(PROFILES)


def test_the_file_has_no_obsolete_version_key_and_profiles_as_documented(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert "version" not in compose
    for name, profile in PROFILES.items():
        assert services[name].get("profiles") == [profile]
    for name in DEFAULT_SERVICES:
        assert not services[name].get("profiles"), f"{name} must start by default"


def test_docker_compose_rejects_a_misspelt_key(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    # The same file, copied unchanged, passes: the failure below is the misspelling's alone.
    control = tmp_path / "control.yml"
    control.write_text(text, encoding="utf-8")
    assert compose_config(control).returncode == 0

    assert "\n    ports:\n" in text, "the web service publishes its port with `ports:`"
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("\n    ports:\n", "\n    portz:\n"), encoding="utf-8")
    result = compose_config(broken)
    assert result.returncode != 0, "docker-compose accepted an unknown key `portz`"
    assert "portz" in result.stderr


# --- images pinned to what the tests run ------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PINNED))
def test_server_images_are_pinned_to_the_versions_the_tests_run(
        services: dict[str, dict[str, Any]], name: str) -> None:
    image, version_command, tested = PINNED[name]
    assert services[name]["image"] == image
    binary = shutil.which(version_command[0]) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / version_command[0])
         .exists()), version_command[0])
    out = subprocess.run([binary, *version_command[1:]], capture_output=True, text=True,
                         timeout=30, check=False)
    assert tested in out.stdout + out.stderr, (
        f"the tests run {(out.stdout + out.stderr).strip()[:200]!r}, compose pins {image}")


def test_every_image_has_an_exact_tag(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), (
            f"{name}: {image} is not pinned to a release")


# --- every environment variable is a real settings field --------------------------------------

def test_resolver_accepts_real_fields_and_rejects_made_up_ones() -> None:
    assert resolve_env_var(IngestSettings, "INGEST_", "__", "INGEST_MQTT__HOST") == [
        "mqtt", "host"]
    assert resolve_env_var(IngestSettings, "INGEST_", "__", "INGEST_BATCH_SIZE") == [
        "batch_size"]
    assert resolve_env_var(DispatchSettings, "DISPATCH_", "__", "DISPATCH_WEB__PORT") == [
        "web", "port"]
    for bad in ("INGEST_MQTT__HOTS", "INGEST_MQTT_HOST", "INGEST_BATCHSIZE",
                "INGEST_BATCH_SIZE__X", "DISPATCH_MQTT__HOST"):
        with pytest.raises(AssertionError):
            resolve_env_var(IngestSettings, "INGEST_", "__", bad)
    with pytest.raises(AssertionError):  # the wrong prefix for the class
        resolve_env_var(IngestSettings, "EDGE_", "__", "EDGE_MQTT__HOST")


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_environment_variable_is_a_settings_field_or_a_secret_file(
        services: dict[str, dict[str, Any]], name: str) -> None:
    settings_cls, prefix, delimiter, _ = APP_SERVICES[name]
    env = service_env(services[name])
    assert env, f"{name} gets no configuration at all"
    for var, value in env.items():
        if var.endswith("_SECRET_FILE"):
            assert value.startswith("/run/secrets/"), f"{var} is not a compose secret"
            assert value.removeprefix("/run/secrets/") in secret_names(services[name])
            var = var.removesuffix("_SECRET_FILE")
        resolve_env_var(settings_cls, prefix, delimiter, var)


def test_no_secret_is_an_environment_variable(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for var, value in service_env(service).items():
            if re.search(r"PASSWORD|TOKEN|SECRET|REGISTRY_URL", var) and not var.endswith(
                    "_FILE"):
                pytest.fail(f"{name}: {var}={value!r} carries a secret in the environment")


def test_no_share_group_on_a_single_mosquitto(services: dict[str, dict[str, Any]]) -> None:
    """Mosquitto 2.0 loses shared subscriptions over a restart (docs/operations.md)."""
    assert "INGEST_SHARE_GROUP" not in service_env(services["ingest"])
    assert service_env(services["ingest"])["INGEST_CLIENT_ID"], "a stable session name"


# --- the settings build from exactly that environment ------------------------------------------

@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_settings_build_from_the_service_environment(
        services: dict[str, dict[str, Any]], name: str,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings_cls, prefix, delimiter, _ = APP_SERVICES[name]
    env = placeholder_secrets(services[name], service_env(services[name]), tmp_path)
    # Only the service's own environment: nothing from the shell running the tests.
    for var in list(os.environ):
        if var.upper().startswith(prefix):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)

    settings: Any = settings_cls()

    for var, raw in env.items():
        value, field = field_at(settings, resolve_env_var(settings_cls, prefix, delimiter, var))
        assert field.annotation is not None, var
        adapter = TypeAdapter(field.annotation)
        try:
            expected = adapter.validate_python(raw)
        except ValidationError:
            # Lists and objects come as JSON, as pydantic-settings reads them.
            expected = adapter.validate_json(raw)
        if isinstance(value, SecretStr):
            value, expected = value.get_secret_value(), expected.get_secret_value()
        assert value == expected, f"{var}={raw!r} landed as {value!r}"

    # The containers find each other by service name, over TLS with the stack's own CA.
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("mosquitto", 8883, True)
    assert mqtt.ca_file == str(tmp_path / "broker_ca"), "the CA is the mounted secret"
    assert mqtt.password.get_secret_value().startswith("placeholder-mqtt_")
    if hasattr(settings, "influx"):
        assert settings.influx.url == "http://influxdb:8086"
    if hasattr(settings, "registry_url"):
        assert settings.registry_url.startswith("postgresql+psycopg://estate:")
        assert "@postgres:5432/registry" in settings.registry_url
    assert settings.mode == "production"


# --- ports, health checks, restarts, start order, volumes ---------------------------------------

def test_only_the_ports_an_operator_needs_are_published(
        services: dict[str, dict[str, Any]]) -> None:
    published = {name: published_ports(s) for name, s in services.items()
                 if published_ports(s)}
    assert published == {
        # Meters and gateways on the estate's network reach the broker, over TLS only.
        "mosquitto": [("0.0.0.0", 8883, 8883)],
        # The page, Prometheus and Grafana only on the host's loopback (a reverse proxy
        # in front authenticates operators: docs/deploy.md).
        "web": [("127.0.0.1", 8000, 8000)],
        "prometheus": [("127.0.0.1", 9090, 9090)],
        "grafana": [("127.0.0.1", 3000, 3000)],
    }


@pytest.mark.parametrize("name", sorted((DEFAULT_SERVICES | set(PROFILES)) - {"setup"}))
def test_every_service_has_a_healthcheck_and_restarts(
        services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    check = service.get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable", False)
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert service.get("restart") == "unless-stopped"


def test_setup_runs_once_and_writes_the_secrets(services: dict[str, dict[str, Any]]) -> None:
    setup = services["setup"]
    assert setup.get("restart") == "no"
    assert setup["command"][0] in SUBCOMMANDS
    assert setup["command"] == ["stack-secrets", "--out", "/secrets"]
    assert any(str(v.get("target") if isinstance(v, dict) else v.split(":")[1]) == "/secrets"
               for v in setup.get("volumes", []))
    for name in ("mosquitto", "postgres"):
        assert depends_on(services[name]).get("setup") == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_service_runs_its_subcommand(
        services: dict[str, dict[str, Any]], name: str) -> None:
    command = services[name].get("command")
    argv = command.split() if isinstance(command, str) else list(command or [])
    assert argv, f"{name} has no command"
    assert argv[0] in SUBCOMMANDS, f"{name} runs {argv[0]!r}, not one of {sorted(SUBCOMMANDS)}"
    assert argv[0] == APP_SERVICES[name][3]
    assert services[name]["image"] == services["setup"]["image"], "one image for all"


def test_image_entrypoint_is_the_estate_command_with_the_tools_it_runs() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["scripts"]
    assert "estate" in scripts
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = dockerfile.splitlines()
    assert 'ENTRYPOINT ["estate"]' in lines
    assert any(line.startswith("USER ") and line.split()[1] not in ("root", "0")
               for line in lines), "the image must not run as root"
    assert "FROM python:3.11-slim-bookworm" in lines, "the base image is pinned to Debian 12"
    # stack-secrets runs openssl and mosquitto_passwd; estate backup runs pg_dump.
    for package in ("openssl", "mosquitto", "postgresql-client"):
        assert re.search(rf"\b{package}\b", dockerfile), f"the image lacks {package}"


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    healthy = "service_healthy"
    for name in ("ingest", "dispatch", "web"):
        deps = depends_on(services[name])
        assert deps.get("mosquitto") == healthy, f"{name} must wait for a healthy broker"
        assert deps.get("influxdb") == healthy, f"{name} must wait for a healthy InfluxDB"
    for name in ("dispatch", "web"):
        assert depends_on(services[name]).get("postgres") == healthy
    for name in ("simulator", "gateway"):
        assert depends_on(services[name]).get("mosquitto") == healthy


def test_state_lives_in_named_volumes(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})

    def named_mounts(service: str) -> dict[str, str]:
        mounts = {}
        for spec in services[service].get("volumes", []):
            if isinstance(spec, dict):
                if spec.get("type") == "volume":
                    mounts[spec["target"]] = spec["source"]
                continue
            source, target = str(spec).split(":")[:2]
            if not source.startswith((".", "/")):
                mounts[target] = source
        return mounts

    expected = {"mosquitto": "/mosquitto/data", "influxdb": "/var/lib/influxdb",
                "postgres": "/var/lib/postgresql/data", "ingest": "/var/lib/estate",
                "simulator": "/var/lib/estate", "gateway": "/var/lib/estate",
                "prometheus": "/prometheus", "grafana": "/var/lib/grafana"}
    for service, target in expected.items():
        assert named_mounts(service).get(target) in declared, f"{service} {target}"
    env = service_env(services["ingest"])
    assert env["INGEST_SPOOL_DIR"].startswith("/var/lib/estate/"), "the spool outlives it"
    assert service_env(services["gateway"])["GATEWAY_OUTBOX_PATH"].startswith(
        "/var/lib/estate/")


# --- secrets: what setup writes is what the services mount ----------------------------------------

def test_every_secret_is_a_file_the_setup_service_writes(
        compose: dict[str, Any], tmp_path: Path) -> None:
    written = write_stack_secrets(load_estate(SAMPLE_ESTATE), tmp_path / "secrets")
    files = {p.relative_to(tmp_path) for p in written.written}
    for name, spec in compose["secrets"].items():
        path = Path(spec["file"])
        assert path.parts[0] == "secrets", f"{name} is not under ./secrets"
        assert path in files, f"{name}: setup does not write {path}"
    assert {f"mqtt_{s.name}" for s in STACK_SERVICES} <= set(compose["secrets"])
    again = write_stack_secrets(load_estate(SAMPLE_ESTATE), tmp_path / "secrets")
    assert again.written == (), "a second run keeps every secret"


def test_the_broker_speaks_tls_only_with_the_mounted_secrets(
        services: dict[str, dict[str, Any]]) -> None:
    conf = mosquitto_directives(ROOT / "deploy" / "mosquitto" / "mosquitto.conf")
    assert conf["allow_anonymous"] == ["false"]
    assert conf["listener"] == ["8883"], "one listener, the TLS one"
    mounted = secret_names(services["mosquitto"])
    for directive in ("password_file", "acl_file", "certfile", "keyfile", "cafile"):
        (path,) = conf[directive]
        assert path.startswith("/run/secrets/")
        assert path.removeprefix("/run/secrets/") in mounted, directive
    check = services["mosquitto"]["healthcheck"]["test"][1]
    assert "-p 8883" in check
    assert "--cafile /run/secrets/broker_ca" in check
