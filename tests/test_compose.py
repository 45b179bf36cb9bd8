"""docker-compose.yml and nginx.conf agree with each other, with the settings and with Compose v1.29.

The stacks themselves run on a real Docker engine in tests/test_containers.py; this checks the wiring
quickly: which services each profile starts, where settings come from, health checks, the upstreams.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from conftest import PROJECT_ROOT
from delivery_service.settings import Settings

COMPOSE_TEXT = (PROJECT_ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
# Settings the image fixes (HOST, PORT, DATA_DIR) or the compose file sets itself (REDIS_URL,
# FORWARDED_ALLOW_IPS); TASK_STORE is unused in the cluster mode compose always runs.
NOT_PASSED_THROUGH = {"HOST", "PORT", "DATA_DIR", "REDIS_URL", "FORWARDED_ALLOW_IPS", "TASK_STORE"}


def test_plain_up_is_the_service_and_the_production_profile_adds_to_it() -> None:
    plain = {name for name, service in SERVICES.items() if not service.get("profiles")}
    production = {name for name, service in SERVICES.items() if service.get("profiles") == ["production"]}
    assert plain == {"multi-agent-system", "worker", "redis"}, "plain `up` starts the service, its worker and Redis"
    assert production == {"multi-agent-system-2", "worker-2", "nginx"}, "production adds replicas, never a second store"
    assert SERVICES["multi-agent-system"]["ports"] == ["${PUBLISH_API_PORT:-8000}:8000"]
    assert SERVICES["nginx"]["ports"] == ["${PUBLISH_NGINX_PORT:-80}:80"]
    for name in ("worker", "worker-2"):
        assert SERVICES[name]["command"][:4] == ["celery", "-A", "delivery_service.cluster.worker", "worker"]


def test_every_setting_is_passed_through_and_env_file_is_not_used() -> None:
    for name, service in SERVICES.items():
        assert "env_file" not in service, f"{name}: Compose v1.29 rejects the optional form, and a missing .env fails"
    for name in ("multi-agent-system", "multi-agent-system-2", "worker", "worker-2"):
        environment = SERVICES[name]["environment"]
        for field in Settings.model_fields:
            variable = field.upper()
            if variable not in NOT_PASSED_THROUGH:
                assert environment.get(variable) == f"${{{variable}:-}}", f"{name} passes {variable} through"
        assert environment["REDIS_URL"] == "${REDIS_URL:-redis://redis:6379/0}"
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_every_service_has_a_health_check_and_redis_keeps_its_data() -> None:
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"], f"{name} has a health check"
    assert "redis-data:/data" in SERVICES["redis"]["volumes"] and "redis-data" in COMPOSE["volumes"]
    assert "--appendonly" in SERVICES["redis"]["command"]
    dependencies = SERVICES["nginx"]["depends_on"].items()
    healthy_first = {name for name, dependency in dependencies if dependency["condition"] == "service_healthy"}
    assert healthy_first == {"multi-agent-system", "multi-agent-system-2"}


def test_nginx_balances_the_api_services_and_compose_variables_are_documented() -> None:
    nginx = (PROJECT_ROOT / "nginx.conf").read_text()
    assert set(re.findall(r"server ([\w-]+):8000\b", nginx)) == {"multi-agent-system", "multi-agent-system-2"}
    example = (PROJECT_ROOT / ".env.example").read_text()
    configuration = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    for variable in set(re.findall(r"\$\{([A-Z_]+):-", COMPOSE_TEXT)):
        assert re.search(rf"^{variable}=", example, re.MULTILINE), f"{variable} missing from .env.example"
        assert f"`{variable}`" in configuration, f"{variable} missing from docs/configuration.md"


def test_only_nginx_is_believed_when_it_names_the_client() -> None:
    nginx_address = SERVICES["nginx"]["networks"]["default"]["ipv4_address"]
    (pool,) = COMPOSE["networks"]["default"]["ipam"]["config"]
    assert nginx_address == "${SUBNET_PREFIX:-172.30.87}.2" and pool["subnet"] == "${SUBNET_PREFIX:-172.30.87}.0/24"
    assert pool["ip_range"] == "${SUBNET_PREFIX:-172.30.87}.128/25", "no other container can be given Nginx's address"
    for name in ("multi-agent-system", "multi-agent-system-2"):
        assert SERVICES[name]["environment"]["FORWARDED_ALLOW_IPS"] == nginx_address, f"{name} trusts Nginx alone"


@pytest.mark.slow  # runs docker-compose: the quick loop runs none
@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
@pytest.mark.parametrize("profile", [[], ["--profile", "production"]], ids=["plain", "production"])
def test_docker_compose_1_29_accepts_the_file_without_a_dot_env(profile: list[str], tmp_path: Any) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    command = ["docker-compose", "--env-file", str(empty), *profile, "config", "--quiet"]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
