"""`export --target docker`: the build context checked by structure (there is no Docker engine
on our machines): Dockerfile instructions parsed with dockerfile-parse, every COPY source
present and let through .dockerignore, pins complete, the bundle inside verified. That the
image's CMD serves the bundle is checked in tests/e2e/test_serve_bundle.py."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dockerfile_parse import DockerfileParser
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument
from shipyard.packaging.bundle import verify_bundle
from shipyard.packaging.docker import (
    IMAGE_BUNDLE,
    USER_ID,
    DockerOptions,
    export_docker,
)
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry

PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[a-z,]+\])?==[0-9][0-9A-Za-z.+!-]*")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "apt-get", "pip ", "curl", "wget")


@pytest.fixture
def registered(registry: Registry) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    register_model(registry, model, Registration("fraud", sample_input=X[:10]))


def _stages(context: Path) -> list[list[dict[str, Any]]]:
    parser = DockerfileParser(path=str(context / "Dockerfile"))
    stages: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "COMMENT":
            continue
        if instruction["instruction"] == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append(instruction)
    return stages


def _values(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [str(i["value"]) for i in stage if i["instruction"] == name]


def _ignored(context: Path, relative: str) -> bool:
    """.dockerignore semantics for the patterns we write: last matching line wins."""
    ignored = False
    for line in (context / ".dockerignore").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.removeprefix("!")
        if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, pattern + "/*"):
            ignored = not negate
    return ignored


def test_build_context_structure(registry: Registry, registered: None, tmp_path: Path) -> None:
    context = export_docker(
        registry, "fraud", tmp_path / "out" / "ctx", options=DockerOptions(workers=2)
    )
    build, final = _stages(context)
    assert _values(build, "FROM") == ["python:3.12-slim AS build"]
    assert _values(final, "FROM") == ["python:3.12-slim"]

    # Final stage: unprivileged user, no build tools, health check, ports, the serve command.
    assert _values(final, "USER") == [f"{USER_ID}:{USER_ID}"]
    for run in _values(final, "RUN"):
        assert not any(tool in run for tool in BUILD_TOOLS), run
    assert _values(final, "EXPOSE") == ["8080 8081"]
    (health,) = _values(final, "HEALTHCHECK")
    options, _, probe = health.partition(" CMD ")
    assert "--interval=" in options and "--start-period=" in options
    assert "http://127.0.0.1:8080/v2/health/ready" in " ".join(json.loads(probe))
    (cmd,) = _values(final, "CMD")
    command = json.loads(cmd)  # exec form: no shell between the runtime and the server
    assert command[:4] == ["shipyard", "serve", "--bundle", IMAGE_BUNDLE]
    assert command[command.index("--workers") + 1] == "2"
    copies = _values(final, "COPY")
    assert f"bundle/ {IMAGE_BUNDLE}/" in copies and "--from=build /opt/venv /opt/venv" in copies

    # Every COPY source from the context exists and reaches the builder.
    for instruction in _values(build, "COPY") + copies:
        words = [w for w in instruction.split() if not w.startswith("--")]
        if instruction.startswith("--from="):
            continue
        for source in words[:-1]:
            assert (context / source).exists(), source
            assert not _ignored(context, source.rstrip("/")), source
    assert not _ignored(context, "bundle/model/compiled/model.onnx")
    assert _ignored(context, "notes.txt") and _ignored(context, ".git")

    # Pins: the bundle's requirements and a constraints file, every line name==version.
    requirements = (context / "requirements.txt").read_text()
    assert requirements == (context / "bundle" / "requirements.txt").read_text()
    for path in ("requirements.txt", "constraints.txt"):
        lines = [line for line in (context / path).read_text().splitlines() if line[:1] != "#"]
        assert lines and all(PIN.fullmatch(line) for line in lines), (path, lines)
    constraints = (context / "constraints.txt").read_text()
    for needed in ("shipyard==", "scikit-learn==", "onnxruntime==", "uvicorn==", "numpy=="):
        assert needed in constraints

    info = verify_bundle(context / "bundle")
    assert info.ref == "fraud:1" and not info.signed
    assert [p.name for p in context.parent.iterdir()] == ["ctx"]  # no staging left behind


def test_options_wheels_and_signing(registry: Registry, registered: None, tmp_path: Path) -> None:
    wheel = tmp_path / "shipyard-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK fake wheel")
    options = DockerOptions("python:3.11-slim@sha256:" + "a" * 64, grpc=False, wheels=(wheel,))
    context = export_docker(registry, "fraud:1", tmp_path / "ctx", options=options)
    build, final = _stages(context)
    assert _values(final, "FROM") == [options.base_image]
    assert _values(final, "EXPOSE") == ["8080"]
    assert "--no-grpc" in json.loads(_values(final, "CMD")[0])
    assert (context / "wheels" / wheel.name).read_bytes() == b"PK fake wheel"
    assert any("--find-links /build/wheels" in run for run in _values(build, "RUN"))
    assert "3.11" in (context / "constraints.txt").read_text().splitlines()[0]


def test_refusals(registry: Registry, registered: None, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="is not an image name"):
        export_docker(registry, "fraud", tmp_path / "a", options=DockerOptions("x; rm -rf /"))
    with pytest.raises(InvalidArgument, match="is not a .whl file"):
        export_docker(
            registry, "fraud", tmp_path / "a", options=DockerOptions(wheels=(tmp_path / "no.whl",))
        )
    with pytest.raises(InvalidArgument, match="is a directory"):
        export_docker(registry, "fraud", tmp_path / "a.tar.gz")
    assert not (tmp_path / "a").exists()

    context = export_docker(registry, "fraud", tmp_path / "ctx")
    with pytest.raises(Conflict, match="already exists"):
        export_docker(registry, "fraud", context)
    assert export_docker(registry, "fraud", context, overwrite=True) == context
    precious = tmp_path / "src"
    precious.mkdir()
    (precious / "main.py").write_text("work")
    with pytest.raises(FailedPrecondition, match="without a Dockerfile"):
        export_docker(registry, "fraud", precious, overwrite=True)
    assert (precious / "main.py").read_text() == "work"


def test_cli_docker_target(tmp_path: Path, database_url: str) -> None:
    from shipyard.app.settings import Settings
    from shipyard.client import Registry as Client

    env = {"SHIPYARD_HOME": str(tmp_path / "home"), "SHIPYARD_DATABASE_URL": database_url}
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    with Client(settings=Settings(home=tmp_path / "home", database_url=database_url)) as client:
        client.register(
            LogisticRegression().fit(X, (X[:, 1] > 0).astype(int)), "fraud", sample_input=X
        )
    out = tmp_path / "ctx"
    result = CliRunner().invoke(
        app, ["export", "fraud", "--target", "docker", "-o", str(out)], env=env
    )
    assert result.exit_code == 0, result.stderr
    assert "wrote Docker build context of fraud" in result.stdout and (out / "Dockerfile").is_file()
    assert "pass --wheel FILE with shipyard's wheel" in " ".join(result.stdout.split())
    result = CliRunner().invoke(
        app,
        ["export", "fraud", "--target", "docker", "-o", str(out), "--base-image", "Bad Image"],
        env=env,
    )
    assert result.exit_code == 3 and "is not an image name" in result.stderr
    result = CliRunner().invoke(
        app, ["export", "ghost", "--target", "docker", "-o", str(tmp_path / "g")], env=env
    )
    assert result.exit_code == 4 and "'ghost' not found" in result.stderr
