"""Defaulting and validation of the built-in types, limited to what an operator can trip over.

The real apiserver has a typed schema for every built-in; here only the fields that commonly matter
are defaulted (so that a diff between a desired and an actual object shows what a real server adds)
and validated (so that an invalid Deployment/Service/Job is refused as a real server would).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from modelrollout_devkit.emulator.errors import Cause, bad_request, invalid_value
from modelrollout_devkit.emulator.resources import ResourceType

JsonDict = dict[str, Any]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_MAX_CONFIG_SIZE = 1024 * 1024  # ConfigMaps and Secrets hold at most 1 MiB of data

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.',"
    " and must start and end with an alphanumeric character (e.g. 'example.com', regex used for"
    " validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must"
    " start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for"
    " validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an"
    " alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123',"
    " regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def validate_metadata(rtype: ResourceType, obj: JsonDict) -> list[Cause]:
    meta = obj.get("metadata") or {}
    causes: list[Cause] = []
    name = meta.get("name", "")
    if rtype.kind == "Namespace":
        pattern, limit, message = _DNS_LABEL, 63, _LABEL_MSG
    elif rtype.kind == "Service":
        pattern, limit, message = _DNS_1035, 63, _1035_MSG
    else:
        pattern, limit, message = _DNS_SUBDOMAIN, 253, _SUBDOMAIN_MSG
    if not pattern.match(name):
        causes.append(Cause("metadata.name", "FieldValueInvalid", f"Invalid value: {invalid_value(name)}: {message}"))
    elif len(name) > limit:
        causes.append(
            Cause(
                "metadata.name",
                "FieldValueInvalid",
                f"Invalid value: {invalid_value(name)}: must be no more than {limit} characters",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        if not _valid_qualified_name(key):
            causes.append(
                Cause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f"Invalid value: {invalid_value(key)}: name part must consist of alphanumeric"
                    " characters, '-', '_' or '.', and must start and end with an alphanumeric"
                    " character",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                Cause(
                    "metadata.labels",
                    "FieldValueInvalid",
                    f"Invalid value: {invalid_value(value)}: a valid label must be an empty string or"
                    " consist of alphanumeric characters, '-', '_' or '.', and must start and end with"
                    " an alphanumeric character (at most 63 characters)",
                )
            )
    for key in meta.get("annotations") or {}:
        if not _valid_qualified_name(key):
            causes.append(
                Cause(
                    "metadata.annotations",
                    "FieldValueInvalid",
                    f"Invalid value: {invalid_value(key)}: name part must consist of alphanumeric"
                    " characters, '-', '_' or '.', and must start and end with an alphanumeric"
                    " character",
                )
            )
    return causes


def _valid_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def check_field_types(obj: JsonDict) -> None:
    """Decoding errors a typed server reports as 400 before any validation."""
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad_request("json: cannot unmarshal into Go struct field Object.metadata of type v1.ObjectMeta")
    for field in ("labels", "annotations"):
        values = (meta or {}).get(field)
        if values is not None and (
            not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
        ):
            raise bad_request(
                f"json: cannot unmarshal into Go struct field ObjectMeta.metadata.{field} of type map[string]string"
            )


def _default_pod_spec(spec: JsonDict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            image = str(container.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("resources", {})
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _template_spec(obj: JsonDict) -> JsonDict | None:
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        spec: JsonDict = template["spec"]
        return spec
    return None


def apply_defaults(rtype: ResourceType, obj: JsonDict, old: JsonDict | None, allocate_ip: Callable[[], str]) -> None:
    """Mutate a (private copy of a) built-in object with the apiserver's defaults."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    match rtype.kind:
        case "Namespace":
            obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
                "metadata"
            ].get("name", "")
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        case "Deployment" if spec is not None:
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
        case "Job" if spec is not None:
            spec.setdefault("parallelism", 1)
            spec.setdefault("completions", 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            uid = (obj.get("metadata") or {}).get("uid", "")
            name = (obj.get("metadata") or {}).get("name", "")
            if "selector" not in spec and not spec.get("manualSelector"):
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                template = spec.setdefault("template", {})
                labels = template.setdefault("metadata", {}).setdefault("labels", {})
                labels.update(
                    {
                        "batch.kubernetes.io/controller-uid": uid,
                        "batch.kubernetes.io/job-name": name,
                        "controller-uid": uid,
                        "job-name": name,
                    }
                )
        case "Service" if spec is not None:
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if spec["type"] != "ExternalName":
                old_spec = (old or {}).get("spec") or {}
                if not spec.get("clusterIP"):
                    spec["clusterIP"] = old_spec.get("clusterIP") or allocate_ip()
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
                spec.setdefault("internalTrafficPolicy", "Cluster")
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
                    if "port" in port:
                        port.setdefault("targetPort", port["port"])
        case "Pod" if spec is not None:
            _default_pod_spec(spec)
            spec.setdefault("enableServiceLinks", True)
            spec.setdefault("priority", 0)
        case "Secret":
            obj.setdefault("type", "Opaque")
            string_data = obj.pop("stringData", None) or {}
            if string_data:
                data = obj.setdefault("data", {})
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
    template_spec = _template_spec(obj)
    if template_spec is not None and rtype.kind in ("Deployment", "Job"):
        _default_pod_spec(template_spec)


def initial_status(rtype: ResourceType) -> JsonDict | None:
    """The status a create starts with, whatever the client sent (None: no status at all)."""
    statuses: dict[str, JsonDict] = {
        "Namespace": {"phase": "Active"},
        "Deployment": {},
        "Job": {},
        "Service": {"loadBalancer": {}},
        "Pod": {"phase": "Pending", "qosClass": "BestEffort"},
    }
    return statuses.get(rtype.kind)


def _labels_match(selector: Any, labels: Any) -> bool:
    match_labels = (selector or {}).get("matchLabels") or {}
    return isinstance(labels, dict) and all(labels.get(k) == v for k, v in match_labels.items())


def _validate_containers(spec: JsonDict, path: str, causes: list[Cause]) -> None:
    containers = spec.get("containers")
    if not containers:
        causes.append(Cause(f"{path}.containers", "FieldValueRequired", "Required value"))
        return
    for index, container in enumerate(containers):
        where = f"{path}.containers[{index}]"
        if not isinstance(container, dict):
            causes.append(Cause(where, "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        if not container.get("name"):
            causes.append(Cause(f"{where}.name", "FieldValueRequired", "Required value"))
        elif not _DNS_LABEL.match(container["name"]):
            causes.append(
                Cause(
                    f"{where}.name",
                    "FieldValueInvalid",
                    f"Invalid value: {invalid_value(container['name'])}: {_LABEL_MSG}",
                )
            )
        if not container.get("image"):
            causes.append(Cause(f"{where}.image", "FieldValueRequired", "Required value"))


def validate(rtype: ResourceType, obj: JsonDict, old: JsonDict | None) -> list[Cause]:
    """Type-specific validation of a built-in object (after defaulting)."""
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    old_spec = (old or {}).get("spec") or {}
    template_spec = _template_spec(obj)
    match rtype.kind:
        case "Deployment":
            if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
                causes.append(
                    Cause(
                        "spec.replicas",
                        "FieldValueInvalid",
                        f"Invalid value: {invalid_value(spec.get('replicas'))}: must be greater than or equal to 0",
                    )
                )
            if not spec.get("selector"):
                causes.append(Cause("spec.selector", "FieldValueRequired", "Required value"))
            elif not _labels_match(
                spec["selector"], ((spec.get("template") or {}).get("metadata") or {}).get("labels")
            ):
                causes.append(
                    Cause(
                        "spec.template.metadata.labels",
                        "FieldValueInvalid",
                        'Invalid value: "object": `selector` does not match template `labels`',
                    )
                )
            if old is not None and old_spec.get("selector") != spec.get("selector"):
                causes.append(
                    Cause("spec.selector", "FieldValueInvalid", 'Invalid value: "object": field is immutable')
                )
            if template_spec is None:
                causes.append(Cause("spec.template.spec", "FieldValueRequired", "Required value"))
            else:
                _validate_containers(template_spec, "spec.template.spec", causes)
        case "Job":
            if template_spec is None:
                causes.append(Cause("spec.template.spec", "FieldValueRequired", "Required value"))
            else:
                _validate_containers(template_spec, "spec.template.spec", causes)
                policy = template_spec.get("restartPolicy")
                if policy not in ("OnFailure", "Never"):
                    causes.append(
                        Cause(
                            "spec.template.spec.restartPolicy",
                            "FieldValueNotSupported",
                            f'Unsupported value: {invalid_value(policy)}: supported values: "OnFailure", "Never"',
                        )
                    )
            if old is not None and old_spec.get("template") != spec.get("template"):
                causes.append(
                    Cause("spec.template", "FieldValueInvalid", 'Invalid value: "object": field is immutable')
                )
        case "Service":
            ports = spec.get("ports") or []
            headless = spec.get("clusterIP") == "None"
            if not ports and spec.get("type") != "ExternalName" and not headless:
                causes.append(Cause("spec.ports", "FieldValueRequired", "Required value"))
            for index, port in enumerate(ports):
                number = port.get("port") if isinstance(port, dict) else None
                if not isinstance(number, int) or not 0 < number < 65536:
                    causes.append(
                        Cause(
                            f"spec.ports[{index}].port",
                            "FieldValueInvalid",
                            f"Invalid value: {invalid_value(number)}: must be between 1 and 65535, inclusive",
                        )
                    )
                if len(ports) > 1 and not (isinstance(port, dict) and port.get("name")):
                    causes.append(Cause(f"spec.ports[{index}].name", "FieldValueRequired", "Required value"))
            if old is not None and old_spec.get("clusterIP") and old_spec.get("clusterIP") != spec.get("clusterIP"):
                causes.append(
                    Cause("spec.clusterIPs[0]", "FieldValueInvalid", 'Invalid value: "object": may not change once set')
                )
        case "Pod":
            _validate_containers(spec, "spec", causes)
        case "Lease":
            duration, transitions = spec.get("leaseDurationSeconds"), spec.get("leaseTransitions")
            if isinstance(duration, int) and duration <= 0:
                causes.append(
                    Cause(
                        "spec.leaseDurationSeconds",
                        "FieldValueInvalid",
                        f"Invalid value: {duration}: must be greater than 0",
                    )
                )
            if isinstance(transitions, int) and transitions < 0:
                causes.append(
                    Cause(
                        "spec.leaseTransitions",
                        "FieldValueInvalid",
                        f"Invalid value: {transitions}: must be greater than or equal to 0",
                    )
                )
        case "ConfigMap" | "Secret":
            size = sum(len(str(v)) for field in ("data", "binaryData") for v in (obj.get(field) or {}).values())
            if size > _MAX_CONFIG_SIZE:
                causes.append(
                    Cause("data", "FieldValueTooLong", f"Too long: must have at most {_MAX_CONFIG_SIZE} bytes")
                )
            for field in ("data", "binaryData"):
                for key, value in (obj.get(field) or {}).items():
                    if not _CONFIG_KEY.match(key):
                        causes.append(
                            Cause(
                                f"{field}[{key}]",
                                "FieldValueInvalid",
                                f"Invalid value: {invalid_value(key)}: a valid config key must consist"
                                " of alphanumeric characters, '-', '_' or '.'",
                            )
                        )
                    if rtype.kind == "Secret" or field == "binaryData":
                        try:
                            base64.b64decode(str(value), validate=True)
                        except binascii.Error:
                            raise bad_request("illegal base64 data at input byte 0") from None
        case "Event" if rtype.group == "":
            involved = (obj.get("involvedObject") or {}).get("namespace", "")
            namespace = (obj.get("metadata") or {}).get("namespace", "")
            if (involved and involved != namespace) or (not involved and namespace not in ("", "default")):
                causes.append(
                    Cause(
                        "involvedObject.namespace",
                        "FieldValueInvalid",
                        f"Invalid value: {invalid_value(involved)}: does not match event.namespace",
                    )
                )
    return causes
