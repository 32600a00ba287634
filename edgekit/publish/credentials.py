"""Registry credentials: from the environment, or the Docker config as `docker login` left it."""
from __future__ import annotations

import json
import os
from pathlib import Path

from edgekit.errors import PublishError


def for_host(host: str) -> tuple[str, str] | None:
    """EDGEKIT_REGISTRY_USERNAME/PASSWORD, else the Docker config as `docker login` left it: inline auths,
    credHelpers or credsStore (docker-credential-<helper> get)."""
    import base64
    import subprocess

    user, password = os.environ.get("EDGEKIT_REGISTRY_USERNAME"), os.environ.get("EDGEKIT_REGISTRY_PASSWORD")
    if user and password:
        return user, password
    path = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    inline = (cfg.get("auths", {}).get(host) or {}).get("auth")
    if inline:
        u, _, p = base64.b64decode(inline).decode().partition(":")
        return u, p
    helper = cfg.get("credHelpers", {}).get(host) or cfg.get("credsStore")
    if helper:
        try:
            r = subprocess.run([f"docker-credential-{helper}", "get"], input=host, capture_output=True, text=True,
                               timeout=30)
            if r.returncode == 0:
                got = json.loads(r.stdout)
                return got["Username"], got["Secret"]
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError, KeyError):
            pass
        raise PublishError(f"the Docker credential helper docker-credential-{helper} gave no credentials for {host}")
    return None
