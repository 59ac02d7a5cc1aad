"""The apiserver itself refuses every pod template override that reaches beyond the allowlist,
naming the field, for any client: the requests here ask for no strict field validation
(`--validate=false`), so an unknown field would only be pruned; each refusal comes from the
schema. Allowed overrides are stored and rendered into the Deployment by the operator."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e.harness.controlplane import ControlPlane
from joulescale_operator.testing import OperatorProcess, apply, get, service_manifest
from tests.integration.operator.operators import wait_children

pytestmark = pytest.mark.integration

GPU = {"products": ["NVIDIA-A100-SXM4-80GB"]}
OVERRIDE = "spec.decode.podTemplate"
POD = f"{OVERRIDE}.spec"


def sidecar(**fields: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "helper", "image": "busybox", **fields}]}}


def engine(**fields: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "engine", **fields}]}}


def volume(**source: Any) -> dict[str, Any]:
    return {"spec": {"volumes": [{"name": "v", **source}]}}


def secure(**context: Any) -> dict[str, Any]:
    return sidecar(securityContext=context)


REFUSED_POD_FIELDS: list[tuple[str, Any]] = [
    ("hostPID", True),
    ("hostNetwork", True),
    ("hostIPC", True),
    ("hostUsers", False),
    ("shareProcessNamespace", True),
    ("securityContext", {"runAsUser": 0}),
    ("securityContext", {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]}),
    ("serviceAccountName", "default"),
    ("serviceAccount", "default"),
    ("automountServiceAccountToken", True),
    ("nodeName", "gpu-node-1"),
    ("nodeSelector", {"kubernetes.io/hostname": "gpu-node-1"}),
    ("schedulerName", "mine"),
    ("runtimeClassName", "nvidia-privileged"),
    ("initContainers", [{"name": "root", "image": "busybox", "securityContext": {"privileged": True}}]),
    ("ephemeralContainers", [{"name": "debug", "image": "busybox"}]),
    ("resourceClaims", [{"name": "gpus", "resourceClaimName": "all-gpus"}]),
    ("resources", {"limits": {"cpu": "1"}}),
    ("priority", 1000000000),
    ("hostAliases", [{"ip": "10.0.0.1", "hostnames": ["router"]}]),
    ("dnsPolicy", "Default"),
    ("restartPolicy", "Never"),
    ("os", {"name": "linux"}),
]

REFUSED_VOLUMES: list[tuple[str, Any]] = [
    ("hostPath", {"path": "/"}),
    ("nfs", {"server": "10.0.0.1", "path": "/"}),
    ("iscsi", {"targetPortal": "10.0.0.1", "iqn": "iqn.x", "lun": 0}),
    ("csi", {"driver": "secrets-store.csi.k8s.io"}),
    ("projected", {"sources": [{"serviceAccountToken": {"path": "token"}}]}),
    ("downwardAPI", {"items": []}),
    ("ephemeral", {"volumeClaimTemplate": {"spec": {}}}),
    ("image", {"reference": "busybox"}),
    ("gitRepo", {"repository": "https://example.com/x.git"}),
    ("rbd", {"monitors": ["10.0.0.1"], "image": "x"}),
    ("flexVolume", {"driver": "x"}),
    ("cephfs", {"monitors": ["10.0.0.1"]}),
]

HOSTILE: list[tuple[str, Any, str]] = [
    *((f"pod-{name}", {"spec": {name: value}}, f"{POD}.{name}") for name, value in REFUSED_POD_FIELDS),
    *(
        (f"volume-{name}", volume(**{name: value}), f"{POD}.volumes[0].{name}")
        for name, value in REFUSED_VOLUMES
    ),
    ("volume-two-sources", volume(emptyDir={}, configMap={"name": "c"}), f"{POD}.volumes[0]"),
    ("volume-no-source", volume(), f"{POD}.volumes[0]"),
    ("engine-command", engine(command=["sh", "-c", "cat /etc/shadow"]), f"{POD}.containers[0].command"),
    ("engine-args", engine(args=["--evil"]), f"{POD}.containers[0].args"),
    ("engine-image", engine(image="evil/engine"), f"{POD}.containers[0].image"),
    ("engine-ports", engine(ports=[{"containerPort": 22}]), f"{POD}.containers[0].ports"),
    ("engine-working-dir", engine(workingDir="/"), f"{POD}.containers[0].workingDir"),
    (
        "engine-gpu-override",
        engine(resources={"limits": {"nvidia.com/gpu": 8}}),
        f"{POD}.containers[0].resources.limits",
    ),
    ("privileged", secure(privileged=True), f"{POD}.containers[0].securityContext.privileged"),
    (
        "privilege-escalation",
        secure(allowPrivilegeEscalation=True),
        f"{POD}.containers[0].securityContext.allowPrivilegeEscalation",
    ),
    (
        "capabilities-add",
        secure(capabilities={"add": ["SYS_ADMIN"]}),
        f"{POD}.containers[0].securityContext.capabilities.add",
    ),
    ("proc-mount", secure(procMount="Unmasked"), f"{POD}.containers[0].securityContext.procMount"),
    (
        "selinux",
        secure(seLinuxOptions={"type": "spc_t"}),
        f"{POD}.containers[0].securityContext.seLinuxOptions",
    ),
    (
        "windows",
        secure(windowsOptions={"hostProcess": True}),
        f"{POD}.containers[0].securityContext.windowsOptions",
    ),
    (
        "apparmor",
        secure(appArmorProfile={"type": "Unconfined"}),
        f"{POD}.containers[0].securityContext.appArmorProfile",
    ),
    (
        "seccomp-unconfined",
        secure(seccompProfile={"type": "Unconfined"}),
        f"{POD}.containers[0].securityContext.seccompProfile.type",
    ),
    (
        "host-port",
        sidecar(ports=[{"containerPort": 80, "hostPort": 80}]),
        f"{POD}.containers[0].ports[0].hostPort",
    ),
    (
        "host-ip",
        sidecar(ports=[{"containerPort": 80, "hostIP": "0.0.0.0"}]),
        f"{POD}.containers[0].ports[0].hostIP",
    ),
    (
        "sidecar-gpu",
        sidecar(resources={"requests": {"nvidia.com/gpu": 1}}),
        f"{POD}.containers[0].resources.requests",
    ),
    (
        "sidecar-amd-gpu",
        sidecar(resources={"limits": {"amd.com/gpu": 1}}),
        f"{POD}.containers[0].resources.limits",
    ),
    (
        "sidecar-mig",
        sidecar(resources={"limits": {"nvidia.com/mig-1g.10gb": 1}}),
        f"{POD}.containers[0].resources.limits",
    ),
    ("sidecar-without-image", {"spec": {"containers": [{"name": "helper"}]}}, f"{POD}.containers[0].image"),
    (
        "sidecar-probe",
        sidecar(livenessProbe={"httpGet": {"host": "169.254.169.254", "port": 80}}),
        "livenessProbe",
    ),
    ("sidecar-lifecycle", sidecar(lifecycle={"postStart": {"exec": {"command": ["x"]}}}), "lifecycle"),
    (
        "sidecar-block-device",
        sidecar(volumeDevices=[{"name": "v", "devicePath": "/dev/sda"}]),
        "volumeDevices",
    ),
    (
        "mount-propagation",
        engine(volumeMounts=[{"name": "v", "mountPath": "/host", "mountPropagation": "Bidirectional"}]),
        f"{POD}.containers[0].volumeMounts[0].mountPropagation",
    ),
    (
        "duplicate-containers",
        {"spec": {"containers": [{"name": "engine"}, {"name": "engine"}]}},
        f"{POD}.containers[1]",
    ),
    (
        "capabilities-add-empty",
        secure(capabilities={"add": []}),
        f"{POD}.containers[0].securityContext.capabilities.add",
    ),
    (
        "annotation-seccomp",
        {"metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}},
        f"{OVERRIDE}.metadata.annotations",
    ),
    (
        "safe-plus-host-path",
        volume(configMap={"name": "c"}, hostPath={"path": "/"}),
        f"{POD}.volumes[0].hostPath",
    ),
    (
        "too-many-containers",
        {"spec": {"containers": [{"name": f"s{i}", "image": "i"} for i in range(9)]}},
        f"{POD}.containers",
    ),
    (
        "sidecar-vgpu",
        sidecar(resources={"limits": {"example.com/vgpu": 1}}),
        f"{POD}.containers[0].resources.limits",
    ),
    (
        "system-priority",
        {"spec": {"priorityClassName": "system-node-critical"}},
        f"{POD}.priorityClassName",
    ),
    ("engine-privileged", engine(securityContext={"privileged": True}), "securityContext.privileged"),
    (
        "engine-gpu-uppercase",
        engine(resources={"limits": {"NVIDIA.COM/GPU": 8}}),
        f"{POD}.containers[0].resources.limits",
    ),
    (
        "engine-resource-claims",
        engine(resources={"claims": [{"name": "gpus"}]}),
        f"{POD}.containers[0].resources.claims",
    ),
    (
        "engine-env-visible-devices",
        engine(env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]),
        f"{POD}.containers[0].env[0].name",
    ),
    (
        "sidecar-env-driver-capabilities",
        sidecar(env=[{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}]),
        f"{POD}.containers[0].env[0].name",
    ),
    (
        "annotation-apparmor",
        {
            "metadata": {
                "annotations": {"container.apparmor.security.beta.kubernetes.io/engine": "unconfined"}
            }
        },
        f"{OVERRIDE}.metadata.annotations",
    ),
    (
        "label-role",
        {"metadata": {"labels": {"joulescale.io/role": "prefill"}}},
        f"{OVERRIDE}.metadata.labels",
    ),
    (
        "label-service",
        {"metadata": {"labels": {"joulescale.io/service": "x"}}},
        f"{OVERRIDE}.metadata.labels",
    ),
    (
        "annotation-gpus",
        {"metadata": {"annotations": {"joulescale.io/gpus": "GPU-victim"}}},
        f"{OVERRIDE}.metadata.annotations",
    ),
    (
        "annotation-subdomain",
        {"metadata": {"annotations": {"agent.JouleScale.io/metrics-url": "http://x"}}},
        f"{OVERRIDE}.metadata.annotations",
    ),
    ("metadata-namespace", {"metadata": {"namespace": "kube-system"}}, f"{OVERRIDE}.metadata.namespace"),
    ("metadata-owners", {"metadata": {"ownerReferences": []}}, f"{OVERRIDE}.metadata.ownerReferences"),
    ("metadata-number", {"metadata": 5}, f"{OVERRIDE}.metadata"),
    ("template-string", "x", OVERRIDE),
    ("spec-list", {"spec": []}, POD),
    ("containers-string", {"spec": {"containers": "x"}}, f"{POD}.containers"),
    ("container-name-number", {"spec": {"containers": [{"name": 5}]}}, f"{POD}.containers[0].name"),
    ("container-name-invalid", {"spec": {"containers": [{"name": "Engine!"}]}}, f"{POD}.containers[0].name"),
    ("container-string", {"spec": {"containers": ["engine"]}}, f"{POD}.containers[0]"),
    ("volumes-map", {"spec": {"volumes": {"v": {}}}}, f"{POD}.volumes"),
    ("env-string", engine(env="A=b"), f"{POD}.containers[0].env"),
    ("label-number", {"metadata": {"labels": {"team": 5}}}, f"{OVERRIDE}.metadata.labels.team"),
    ("tolerations-string", {"spec": {"tolerations": "all"}}, f"{POD}.tolerations"),
    ("affinity-list", {"spec": {"affinity": []}}, f"{POD}.affinity"),
]

HOSTILE_CLOCKS: list[tuple[str, dict[str, Any], str]] = [
    ("clocks-no-gpu", {"minMHz": 3000, "maxMHz": 5000}, "spec.energy.clocks.minMHz"),
    ("clocks-ceiling", {"maxMHz": 2500}, "spec.energy.clocks.maxMHz"),
    ("clocks-floor", {"minMHz": 100}, "spec.energy.clocks.minMHz"),
    ("clocks-zero", {"maxMHz": 0}, "spec.energy.clocks.maxMHz"),
    ("clocks-negative", {"minMHz": -1}, "spec.energy.clocks.minMHz"),
    ("clocks-string", {"minMHz": "fast"}, "spec.energy.clocks.minMHz"),
]


def test_the_prefill_role_refuses_host_access_too(crd_plane: ControlPlane) -> None:
    override = {"spec": {"hostNetwork": True}}
    manifest = service_manifest(
        "prefill-host", "default", prefill={"replicas": 1, "gpu": GPU, "podTemplate": override}
    )
    returncode, stderr = server_dry_run(crd_plane, manifest)
    assert returncode != 0
    assert "spec.prefill.podTemplate.spec.hostNetwork" in stderr, stderr


def test_the_engine_env_may_not_steer_the_nvidia_container_runtime(crd_plane: ControlPlane) -> None:
    env = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]
    manifest = service_manifest("engine-env", "default", engine={"image": "vllm/vllm-openai", "env": env})
    returncode, stderr = server_dry_run(crd_plane, manifest)
    assert returncode != 0
    assert "spec.engine.env[0].name" in stderr, stderr


def server_dry_run(plane: ControlPlane, manifest: dict[str, Any]) -> tuple[int, str]:
    """Create without storing, and without asking the server for strict field validation."""
    result = plane.kubectl(
        "create",
        "--dry-run=server",
        "--validate=false",
        "-f",
        "-",
        input=yaml.safe_dump(manifest),
        check=False,
    )
    return result.returncode, result.stderr


def with_override(name: str, override: Any) -> dict[str, Any]:
    return service_manifest(
        object_name(name), "default", decode={"replicas": 1, "gpu": GPU, "podTemplate": override}
    )


def object_name(case: str) -> str:
    """A valid object name, so that the only thing wrong with a manifest is the case itself."""
    return "".join(c if c.isalnum() else "-" for c in case.lower())


@pytest.mark.parametrize(("name", "override", "field"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_pod_template_is_refused_naming_the_field(
    crd_plane: ControlPlane, name: str, override: Any, field: str
) -> None:
    returncode, stderr = server_dry_run(crd_plane, with_override(name, override))
    assert returncode != 0, f"{name} was accepted"
    assert field in stderr, stderr


@pytest.mark.parametrize(
    ("name", "clocks", "field"), HOSTILE_CLOCKS, ids=[case[0] for case in HOSTILE_CLOCKS]
)
def test_clock_bounds_no_gpu_supports_are_refused(
    crd_plane: ControlPlane, name: str, clocks: dict[str, Any], field: str
) -> None:
    manifest = service_manifest(object_name(name), "default", energy={"clocks": clocks})
    returncode, stderr = server_dry_run(crd_plane, manifest)
    assert returncode != 0, f"{name} was accepted"
    assert field in stderr, stderr


def test_clock_bounds_of_the_shipped_gpus_are_accepted(crd_plane: ControlPlane) -> None:
    manifest = service_manifest("clocks-ok", "default", energy={"clocks": {"minMHz": 210, "maxMHz": 1980}})
    assert server_dry_run(crd_plane, manifest) == (0, "")


def test_a_field_the_core_api_does_not_know_is_never_stored(crd_plane: ControlPlane) -> None:
    """Default deny: a made-up field is refused under kubectl's strict field validation and
    dropped (never stored, never rendered) for a client that asks for none."""
    namespace = crd_plane.create_namespace("unknown")
    override = {"spec": {"hostPid": True, "containers": [{"name": "engine", "priviledged": True}]}}
    manifest = service_manifest(
        "unknown", namespace, decode={"replicas": 1, "gpu": GPU, "podTemplate": override}
    )
    strict = apply(crd_plane, manifest, check=False)
    assert strict.returncode != 0
    assert 'unknown field "spec.decode.podTemplate.spec.hostPid"' in strict.stderr
    crd_plane.kubectl("create", "--validate=false", "-f", "-", input=yaml.safe_dump(manifest))
    stored = get(crd_plane, "eals", "unknown", namespace)
    assert stored is not None
    assert stored["spec"]["decode"]["podTemplate"] == {"spec": {"containers": [{"name": "engine"}]}}


ALLOWED: dict[str, Any] = {
    "metadata": {"labels": {"team": "search"}, "annotations": {"example.com/owner": "search"}},
    "spec": {
        "containers": [
            {
                "name": "engine",
                "env": [{"name": "HF_HOME", "value": "/cache"}],
                "envFrom": [{"secretRef": {"name": "hf-token"}}],
                "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "shm", "mountPath": "/dev/shm"},
                ],
                "resources": {"limits": {"memory": "64Gi"}, "requests": {"cpu": "8"}},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            },
            {
                "name": "log-shipper",
                "image": "fluent/fluent-bit:3.0",
                "args": ["-c", "/config/fluent-bit.conf"],
                "ports": [{"name": "metrics", "containerPort": 2020}],
                "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True}],
                "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                "securityContext": {
                    "runAsNonRoot": True,
                    "readOnlyRootFilesystem": True,
                    "privileged": False,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            },
        ],
        "volumes": [
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
            {"name": "config", "configMap": {"name": "fluent-bit", "defaultMode": 0o444}},
            {"name": "token", "secret": {"secretName": "hf-token"}},
            {"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}},
        ],
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "llm-serving",
        "imagePullSecrets": [{"name": "registry"}],
    },
}


def test_an_allowed_override_is_stored_and_rendered(
    crd_plane: ControlPlane, operator: OperatorProcess
) -> None:
    namespace = crd_plane.create_namespace("override")
    apply(
        crd_plane,
        service_manifest("llama", namespace, decode={"replicas": 1, "gpu": GPU, "podTemplate": ALLOWED}),
    )
    template = wait_children(crd_plane, namespace, "llama")["deployment/llama-decode"]["spec"]["template"]
    pod = template["spec"]
    engine_container, shipper = pod["containers"]
    assert engine_container["name"] == "engine"
    assert engine_container["command"][:2] != ["sh", "-c"]
    assert engine_container["resources"]["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "1"}
    assert {"name": "HF_HOME", "value": "/cache"} in engine_container["env"]
    assert engine_container["envFrom"] == [{"secretRef": {"name": "hf-token"}}]
    # The override's shm mount and volume merge into the operator's (one /dev/shm, the user's size).
    assert sorted(m["mountPath"] for m in engine_container["volumeMounts"]) == ["/cache", "/dev/shm", "/model-cache"]
    assert shipper["image"] == "fluent/fluent-bit:3.0"
    assert shipper["securityContext"]["privileged"] is False
    assert shipper["env"] == [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]
    assert [v["name"] for v in pod["volumes"]] == ["shm", "model-cache", "config", "token", "cache"]
    assert pod["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert pod["priorityClassName"] == "llm-serving"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert [e["key"] for e in term["matchExpressions"]] == ["zone", "nvidia.com/gpu.product"]
    assert template["metadata"]["labels"]["team"] == "search"
    assert template["metadata"]["labels"]["joulescale.io/role"] == "decode"
    assert template["metadata"]["annotations"]["example.com/owner"] == "search"
    assert not {"hostPID", "hostNetwork", "serviceAccountName", "nodeName"} & set(pod)
