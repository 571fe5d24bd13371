"""The single-host stack in docker-compose.yml: valid, wired, and configured with real settings.

No container engine runs here, so these tests check what can be checked without one:
docker-compose validates the file, every environment variable a service gets names a real
field of that service's settings class, the settings build from exactly that environment,
and the services run real subcommands in a sensible start order.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from adapters.mqtt import MqttConnection
from dispatch.settings import DispatchSettings
from edge.settings import EdgeSettings
from estate.errors import BrokerError
from estate.model import SAMPLE_ESTATE, load_estate
from estate.settings import MqttSettings
from ingest.settings import IngestSettings
from launcher import cli
from launcher.broker_security import (
    DEFAULT_SERVICES,
    password_variable,
    service_username,
    write_broker_security,
)
from launcher.servers import Mosquitto, free_port

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
}


# --- helpers -------------------------------------------------------------------------------

def docker_compose() -> str:
    """The docker-compose binary; its absence is a broken setup, not a reason to skip."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed, so docker-compose.yml cannot be "
                    "validated; run `make deps` to install it")
    return found


# Stand-ins for the services' broker passwords, which the stack takes from the
# services.env that `estate broker-credentials` writes.
PLACEHOLDER_PASSWORDS = {password_variable(s.name): f"placeholder-{s.name}"
                         for s in DEFAULT_SERVICES}
# The account each service logs in with, by its role's name.
ACCOUNTS = {"ingest": "ingest", "dispatch": "dispatch", "web": "web", "simulator": "simulator"}


def compose_config(compose_file: Path, *, env_file: Path | None = None,
                   passwords: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `docker-compose config` on a file, relative paths resolved from the project root.

    The passwords come from ``env_file`` if given, else from placeholders unless
    ``passwords`` is false; the shell's own MQTT_PASSWORD_* never leak in.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT_PASSWORD_")}
    if passwords and env_file is None:
        env |= PLACEHOLDER_PASSWORDS
    options = ["--env-file", str(env_file)] if env_file is not None else []
    return subprocess.run(
        [docker_compose(), "--project-directory", str(ROOT), *options, "-f",
         str(compose_file), "config"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT, env=env,
    )


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


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services"
    return found


# --- (a) docker-compose validates the file --------------------------------------------------

def test_docker_compose_validates_the_file() -> None:
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    resolved = yaml.safe_load(result.stdout)
    expected = {"mosquitto", "influxdb", *APP_SERVICES}
    assert set(resolved["services"]) == expected


# --- (e) ...and would reject a broken one ----------------------------------------------------

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


# --- (b) every environment variable is a real settings field ---------------------------------

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
def test_every_environment_variable_is_a_settings_field(
        services: dict[str, dict[str, Any]], name: str) -> None:
    settings_cls, prefix, delimiter, _ = APP_SERVICES[name]
    env = service_env(services[name])
    assert env, f"{name} gets no configuration at all"
    for var in env:
        resolve_env_var(settings_cls, prefix, delimiter, var)


# --- (c) the settings build from exactly that environment ------------------------------------

@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_settings_build_from_the_service_environment(
        services: dict[str, dict[str, Any]], name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings_cls, prefix, delimiter, _ = APP_SERVICES[name]
    env = service_env(services[name])
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
        expected = TypeAdapter(field.annotation).validate_python(raw)
        if isinstance(value, SecretStr):
            value, expected = value.get_secret_value(), expected.get_secret_value()
        assert value == expected, f"{var}={raw!r} landed as {value!r}"

    # The containers find each other by service name, never by loopback.
    mqtt = settings.mqtt
    assert mqtt.host == "mosquitto"
    assert mqtt.port == 1883
    if hasattr(settings, "influx"):
        influx = settings.influx
        assert influx.url == "http://influxdb:8086"
        influx_env = services["influxdb"].get("environment") or {}
        assert influx.database == influx_env["INFLUXDB_DB"]
    assert settings.mode == "production"


def test_web_listens_on_every_interface_at_the_published_port(
        services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.upper().startswith("DISPATCH_"):
            monkeypatch.delenv(var)
    for var, value in service_env(services["web"]).items():
        monkeypatch.setenv(var, value)
    settings = DispatchSettings()
    assert settings.web.host == "0.0.0.0"
    container_ports = {str(p).rsplit(":", 1)[-1] for p in services["web"].get("ports", [])}
    assert str(settings.web.port) in container_ports
    health = " ".join(services["web"]["healthcheck"]["test"])
    assert f":{settings.web.port}/api/health" in health


# --- (d) commands, healthchecks and start order ----------------------------------------------

@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_service_runs_its_subcommand(
        services: dict[str, dict[str, Any]], name: str) -> None:
    command = services[name].get("command")
    argv = command.split() if isinstance(command, str) else list(command or [])
    assert argv, f"{name} has no command"
    assert argv[0] in SUBCOMMANDS, f"{name} runs {argv[0]!r}, not one of {sorted(SUBCOMMANDS)}"
    assert argv[0] == APP_SERVICES[name][3]
    assert services[name].get("build") == ".", f"{name} is not built from this project"


def test_image_entrypoint_is_the_estate_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["scripts"]
    assert "estate" in scripts
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    assert 'ENTRYPOINT ["estate"]' in dockerfile
    assert any(line.startswith("USER ") and line.split()[1] not in ("root", "0")
               for line in dockerfile), "the image must not run as root"


@pytest.mark.parametrize("name", ["mosquitto", "influxdb", "web"])
def test_service_has_a_healthcheck(services: dict[str, dict[str, Any]], name: str) -> None:
    check = services[name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable", False)
    assert check["test"][0] in ("CMD", "CMD-SHELL")


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    healthy = "service_healthy"
    for name in ("ingest", "dispatch", "web"):
        deps = depends_on(services[name])
        assert deps.get("mosquitto") == healthy, f"{name} must wait for a healthy broker"
        assert deps.get("influxdb") == healthy, f"{name} must wait for a healthy InfluxDB"
    assert depends_on(services["simulator"]).get("mosquitto") == healthy


def test_state_lives_in_named_volumes(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})

    def named_mounts(service: str) -> dict[str, str]:
        mounts = {}
        for spec in services[service].get("volumes", []):
            source, target = str(spec).split(":")[:2]
            if not source.startswith((".", "/")):
                mounts[target] = source
        return mounts

    assert named_mounts("mosquitto").get("/mosquitto/data") in declared
    assert named_mounts("influxdb").get("/var/lib/influxdb") in declared
    assert named_mounts("dispatch").get("/var/lib/estate") in declared
    conf = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
    assert any(str(v).startswith("./deploy/mosquitto/mosquitto.conf:")
               for v in services["mosquitto"]["volumes"])
    assert conf.is_file()


# --- (f) the broker: accounts and ACL, no anonymous clients ---------------------------------

def mosquitto_directives(path: Path) -> dict[str, list[str]]:
    """Each directive of a Mosquitto config file with its values, comments left out."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            found.setdefault(name, []).append(value.strip())
    return found


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind-mount target -> source of a service."""
    return {str(v).split(":")[1]: str(v).split(":")[0] for v in service.get("volumes", [])}


def test_the_broker_refuses_anonymous_clients_and_reads_the_generated_files(
        services: dict[str, dict[str, Any]]) -> None:
    conf = mosquitto_directives(ROOT / "deploy" / "mosquitto" / "mosquitto.conf")
    assert conf["allow_anonymous"] == ["false"]
    mounted = mounts(services["mosquitto"])
    for directive, generated in (("password_file", "passwd"), ("acl_file", "acl")):
        (target,) = conf[directive]
        assert mounted.get(target) == f"./secrets/broker/{generated}", (
            f"{directive} {target} is not the mounted {generated}")


def test_generated_credentials_plug_into_the_stack(tmp_path: Path) -> None:
    security = write_broker_security(load_estate(SAMPLE_ESTATE), tmp_path / "broker")
    assert security.services_env_file is not None
    result = compose_config(COMPOSE_FILE, env_file=security.services_env_file)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    acl = security.acl_file.read_text(encoding="utf-8")
    estate = load_estate(SAMPLE_ESTATE).id
    for name, (_, prefix, _, _) in APP_SERVICES.items():
        env = resolved[name]["environment"]
        username = env[f"{prefix}MQTT__USERNAME"]
        assert username == service_username(estate, ACCOUNTS[name])
        assert env[f"{prefix}MQTT__PASSWORD"] == security.password(username)
        assert f"\nuser {username}\n" in acl
    # The simulator's account may publish every meter's readings of the estate.
    assert f"user {service_username(estate, 'simulator')}\n" \
           f"topic write estate/v1/{estate}/+/+/telemetry\n" in acl


def test_the_stack_will_not_start_without_the_passwords() -> None:
    result = compose_config(COMPOSE_FILE, passwords=False)
    assert result.returncode != 0
    assert "run estate broker-credentials" in result.stderr


@pytest.mark.servers
def test_the_broker_config_works_in_a_real_mosquitto(tmp_path: Path) -> None:
    """The deploy config, with the container's paths and port swapped for local ones."""
    security = write_broker_security(load_estate(SAMPLE_ESTATE), tmp_path / "broker")
    port = free_port()
    text = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    swaps = {"listener 1883": f"listener {port} 127.0.0.1",
             "/mosquitto/config/passwd": str(security.password_file),
             "/mosquitto/config/acl": str(security.acl_file),
             "/mosquitto/data/": f"{tmp_path}/data/"}
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "data").mkdir()
    broker = LocalConfigMosquitto(tmp_path / "run", port, text)
    broker.start()
    try:
        settings = MqttSettings(host="127.0.0.1", port=port)
        with pytest.raises(BrokerError, match="refused"):
            MqttConnection(settings, "test-anonymous").connect(timeout_s=10)
        ingest = service_username(load_estate(SAMPLE_ESTATE).id, "ingest")
        connection = MqttConnection(settings.model_copy(update={
            "username": ingest, "password": SecretStr(security.password(ingest))}),
            "test-ingest")
        connection.connect(timeout_s=10)
        connection.close()
        healthy = run_healthcheck(port)
    finally:
        broker.stop()
    down = run_healthcheck(port)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert down.returncode != 0, "a broker that is down must not look healthy"


class LocalConfigMosquitto(Mosquitto):
    """Mosquitto run with a given configuration text (as the current user)."""

    def __init__(self, data_dir: Path, port: int, config: str) -> None:
        super().__init__(data_dir, port=port)
        self._config = f"user {getpass.getuser()}\n{config}"

    def argv(self) -> list[str]:
        binary = super().argv()[0]  # which also writes the default config: replaced here
        self.config_path.write_text(self._config)
        return [binary, "-c", str(self.config_path)]


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The compose file's broker healthcheck, aimed at a local port."""
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    kind, command = services["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    assert "-h 127.0.0.1 " in command
    return subprocess.run(["sh", "-c", command.replace("-h 127.0.0.1 ",
                                                       f"-h 127.0.0.1 -p {port} ")],
                          capture_output=True, text=True, timeout=30, check=False)
