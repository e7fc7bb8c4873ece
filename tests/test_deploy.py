"""Deployment manifests parse; every replica signs the audit chain with one mounted secret."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _serves(command) -> bool:
    return "serve" in (command or []) and "gunmatch" in (command or [])


def test_compose_replicas_mount_one_audit_secret():
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    replicas = [s for s in doc["services"].values() if s.get("image") == "gunmatch:latest"
                and "command" not in s]
    assert replicas, "no gunmatch replica service in compose.yaml"
    for svc in replicas:
        path = svc["environment"]["GUNMATCH_AUDIT_SECRET_FILE"]
        (name,) = svc["secrets"]
        assert path == f"/run/secrets/{name}"
        assert doc["secrets"][name]["file"] == "./audit.key"
    assert "deploy/audit.key" in (DEPLOY.parent / ".gitignore").read_text().split()


def test_k8s_replicas_mount_one_audit_secret():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "gunmatch.yaml").read_text()))
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    path = Path(config["GUNMATCH_AUDIT_SECRET_FILE"])
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if _serves(c["args"])]
    assert {"configMapRef": {"name": "gunmatch"}} in container["envFrom"]
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent)
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["defaultMode"] & 0o077 == 0  # gunmatch refuses a readable secret
    assert not volume["secret"].get("optional", False)


def test_every_manifest_parses():
    for f in [DEPLOY / "compose.yaml", *sorted((DEPLOY / "k8s").glob("*.yaml"))]:
        assert all(d is not None for d in yaml.safe_load_all(f.read_text())), f
