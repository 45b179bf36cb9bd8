"""docker-compose.yml and nginx.conf agree with each other and with the settings (no Docker engine here).

The cluster itself runs in tests/test_cluster.py from the same nginx.conf; this checks the wiring
only Docker would otherwise see: profiles, health checks, the Redis volume, where settings come from.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from conftest import PROJECT_ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_the_production_profile_is_the_cluster() -> None:
    production = {name for name, service in SERVICES.items() if "production" in service.get("profiles", [])}
    assert production == {"redis", "api", "worker", "nginx"}
    assert SERVICES["multi-agent-system"]["profiles"] == ["embedded"], "the single container is the other profile"
    for name in ("api", "worker"):
        assert SERVICES[name]["environment"]["REDIS_URL"].startswith("${REDIS_URL:-redis://redis:6379/")
        assert SERVICES[name]["env_file"][0]["path"] == ".env", "every setting comes from .env"
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["api"]["deploy"]["replicas"] == "${API_REPLICAS:-2}"
    assert SERVICES["worker"]["deploy"]["replicas"] == "${WORKER_REPLICAS:-2}"
    assert SERVICES["worker"]["command"][:4] == ["celery", "-A", "delivery_service.cluster.worker", "worker"]


def test_cluster_services_have_health_checks_and_redis_keeps_its_data() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile, "the api replicas' health check"
    for name in ("redis", "worker", "nginx"):
        assert SERVICES[name]["healthcheck"]["test"], f"{name} has a health check"
    assert "redis-data:/data" in SERVICES["redis"]["volumes"] and "redis-data" in COMPOSE["volumes"]
    assert "--appendonly" in SERVICES["redis"]["command"]
    assert SERVICES["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_nginx_balances_the_api_service_and_compose_variables_are_documented() -> None:
    nginx = (PROJECT_ROOT / "nginx.conf").read_text()
    assert re.search(r"server api:8000\b", nginx), "nginx's upstream is the compose service `api`"
    example = (PROJECT_ROOT / ".env.example").read_text()
    compose_text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    for variable in set(re.findall(r"\$\{([A-Z_]+):-", compose_text)):
        assert re.search(rf"^{variable}=", example, re.MULTILINE), f"{variable} missing from .env.example"
