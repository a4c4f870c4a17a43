"""`shipyard export` (bundle, Docker, Kubernetes, KServe, edge models) and
`shipyard bundle verify|keygen`."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json
from shipyard.client import Registry
from shipyard.codecs.tables import read_table
from shipyard.core.errors import InvalidArgument
from shipyard.packaging import signing
from shipyard.packaging.bundle import export_bundle, verify_bundle
from shipyard.packaging.docker import DEFAULT_BASE_IMAGE, DockerOptions, export_docker
from shipyard.packaging.edge import (
    DEFAULT_MIN_AGREEMENT,
    Agreement,
    EdgeOptions,
    Quantize,
    export_edge,
)
from shipyard.packaging.manifests import (
    ServeManifestOptions,
    inference_service,
    kubernetes_manifests,
    write_manifests,
)
from shipyard.packaging.requirements import shipyard_version

bundle_app = typer.Typer(help="Check and sign exported bundles.", no_args_is_help=True)


class Target(enum.StrEnum):
    bundle = "bundle"
    docker = "docker"
    edge = "edge"
    kubernetes = "kubernetes"
    kserve = "kserve"


def install(app: typer.Typer) -> None:
    app.command("export")(export)
    app.add_typer(bundle_app, name="bundle")


@exits_by_kind
def export(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Directory to write (a bundle ending in .tar.gz is an archive)."
        ),
    ],
    target: Annotated[Target, typer.Option(help="What to export.")] = Target.bundle,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output.")
    ] = False,
    sign: Annotated[
        Path | None,
        typer.Option(help="bundle, docker: Ed25519 private key (PEM) to sign MANIFEST.json."),
    ] = None,
    base_image: Annotated[
        str, typer.Option(help="docker: base image of both stages (pin a digest with @sha256:).")
    ] = DEFAULT_BASE_IMAGE,
    wheel: Annotated[
        list[Path] | None,
        typer.Option(help="docker: a local wheel pip prefers (e.g. shipyard's own); repeatable."),
    ] = None,
    image: Annotated[str | None, typer.Option(help="Container image [shipyard:VERSION].")] = None,
    namespace: Annotated[str | None, typer.Option(help="Kubernetes namespace.")] = None,
    name: Annotated[str | None, typer.Option(help="Resource name [the model name].")] = None,
    replicas: Annotated[int, typer.Option(help="Replicas (the HPA minimum).", min=1)] = 2,
    max_replicas: Annotated[int, typer.Option(help="HPA maximum.", min=1)] = 10,
    cpu: Annotated[str, typer.Option(help="CPU request per replica.")] = "1",
    memory: Annotated[str, typer.Option(help="Memory request and limit per replica.")] = "1Gi",
    workers: Annotated[int, typer.Option(help="Worker processes per replica.", min=1)] = 1,
    secret_name: Annotated[
        str,
        typer.Option(help="Secret with database-url (and optional blob-url, metrics-api-key)."),
    ] = "shipyard",  # noqa: S107 - the name of a Secret, not its value
    service_monitor: Annotated[
        bool, typer.Option("--service-monitor", help="Add a Prometheus Operator ServiceMonitor.")
    ] = False,
    hpa_inflight: Annotated[
        int | None,
        typer.Option(
            help="Also scale on in-flight requests per pod (needs the Prometheus adapter).",
            min=1,
        ),
    ] = None,
    canary_percent: Annotated[
        int | None, typer.Option(help="kserve: canaryTrafficPercent.", min=0, max=100)
    ] = None,
    quantize: Annotated[
        Quantize,
        typer.Option(
            help="edge: int8 weights (dynamic), weights and activations calibrated on the "
            "sample (static), or none."
        ),
    ] = Quantize.dynamic,
    agreement: Annotated[
        Agreement,
        typer.Option(
            help="edge: when an int8 row agrees with fp32: labels equal, the same top class "
            "(argmax), values within 1%, or auto (by the output's type and shape)."
        ),
    ] = Agreement.auto,
    min_agreement: Annotated[
        float,
        typer.Option(
            help="edge: refuse an int8 model agreeing less often with fp32.", min=0, max=1
        ),
    ] = DEFAULT_MIN_AGREEMENT,
    sample: Annotated[
        Path | None,
        typer.Option(
            help="edge: rows to measure agreement, calibrate and trace on "
            "(default: the version's reference data)."
        ),
    ] = None,
) -> None:
    """Export a model version: a verified bundle, a Docker build context, Kubernetes manifests,
    a KServe service or an edge model (ONNX, int8 where it pays, with its device runner)."""
    signed = " (signed)" if sign else ""
    if target is Target.bundle:
        with Registry() as registry:
            path = export_bundle(registry.store, ref, output, overwrite=overwrite, sign_key=sign)
        console.print(f"wrote bundle of {ref} to {path}{signed}", highlight=False)
        return
    if target is Target.docker:
        docker = DockerOptions(base_image, workers, wheels=tuple(wheel or ()))
        with Registry() as registry:
            path = export_docker(
                registry.store, ref, output, options=docker, overwrite=overwrite, sign_key=sign
            )
        console.print(f"wrote Docker build context of {ref} to {path}{signed}", highlight=False)
        if not wheel:
            console.print(
                f"note: the image installs shipyard=={shipyard_version()} from your package index; "
                "pass --wheel FILE with shipyard's wheel if that version is not there",
                highlight=False,
            )
        return
    if target is Target.edge:
        rows = read_table(sample) if sample is not None else None
        edge = EdgeOptions(quantize, min_agreement, rows, agreement)
        _export_edge(ref, output, edge, overwrite)
        return
    if sign is not None:
        raise InvalidArgument("--sign applies to --target bundle and docker only")
    options = ServeManifestOptions(
        ref=ref,
        image=image or f"shipyard:{shipyard_version()}",
        name=name,
        namespace=namespace,
        replicas=replicas,
        max_replicas=max_replicas,
        cpu=cpu,
        memory=memory,
        workers=workers,
        secret_name=secret_name,
        service_monitor=service_monitor,
        hpa_inflight=hpa_inflight,
        canary_percent=canary_percent,
    )
    if target is Target.kubernetes:
        files = kubernetes_manifests(options)
    else:
        files = {"inferenceservice.yaml": inference_service(options)}
    write_manifests(files, output, overwrite=overwrite)
    console.print(f"wrote {', '.join(files)} to {output}", highlight=False)


def _export_edge(ref: str, output: Path, options: EdgeOptions, overwrite: bool) -> None:
    with Registry() as registry:
        report = export_edge(registry.store, ref, output, options=options, overwrite=overwrite)
    sizes = report["bytes"]
    line = f"wrote edge model of {report['ref']} to {output}: {report['precision']}, "
    line += f"{sizes['exported']:,} bytes (fp32 {sizes['fp32']:,})"
    parity = report["parity_vs_fp32"]
    if parity is not None:
        line += f"; agreement with fp32 {parity['agreement']:.2%} on {parity['rows']} rows"
        line += f" ({parity['measure']})"
    console.print(line, highlight=False)
    console.print(f"run it on a device: python {output / report['runner']} {output} ROWS.npy",
                  highlight=False)  # fmt: skip
    if not report["quantization"]["applied"]:
        console.print(f"quantization {report['quantization']['reason']}", highlight=False)


@bundle_app.command("verify")
@exits_by_kind
def verify(
    path: Annotated[Path, typer.Argument(help="Bundle directory or .tar.gz.")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--verify", "--public-key", help="Ed25519 public key (PEM): check MANIFEST.sig."
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check every file of a bundle against its manifest (and its signature)."""
    info = verify_bundle(path, public_key=public_key)
    if json:
        print_json({
            "path": info.path, "ref": info.ref, "flavor": info.flavor, "files": len(info.files),
            "signed": info.signed, "signature_verified": info.signature_verified,
        })  # fmt: skip
        return
    if info.signature_verified:
        signature = "signature verified"
    elif info.signed:
        signature = "signed, signature not checked (pass --verify PUBKEY)"
    else:
        signature = "not signed"
    console.print(
        f"ok: {info.ref} ({info.flavor}), {len(info.files)} files match MANIFEST.json; {signature}",
        highlight=False,
    )


@bundle_app.command("keygen")
@exits_by_kind
def keygen(
    private: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, 0600).")],
    public: Annotated[Path, typer.Argument(help="Where to write the public key (PEM).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
) -> None:
    """Create an Ed25519 key pair for `shipyard export --sign` / `bundle verify --verify`."""
    signing.generate_keypair(private, public, overwrite=overwrite)
    console.print(f"wrote private key {private} and public key {public}", highlight=False)
