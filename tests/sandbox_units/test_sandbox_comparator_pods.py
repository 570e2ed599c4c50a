"""The simulated kubelet's part for the shadow comparator: which pods are comparators, and cluster DNS."""

from __future__ import annotations

from modelrollout.kube.comparator import labels
from modelrollout_devkit.sandbox.kubelet import is_comparator, through_dataplane


def test_comparator_pods_are_told_by_their_own_labels() -> None:
    assert is_comparator(labels("scorer"))
    assert not is_comparator({"modelrollout.io/rollout": "scorer", "app.kubernetes.io/managed-by": "modelrollout"})


def test_service_urls_go_through_the_data_plane_as_cluster_dns_would_send_them() -> None:
    env = {
        "COMPARATOR_STABLE_URL": "http://scorer-stable.ml.svc:80",
        "COMPARATOR_CANDIDATE_URL": "http://scorer-canary.ml.svc.cluster.local/v1",
        "ROLLOUT_NAME": "scorer",
        "ELSEWHERE": "http://example.com:80",
    }
    mapped = through_dataplane(env, "http://127.0.0.1:8000/")
    assert mapped == {
        "COMPARATOR_STABLE_URL": "http://127.0.0.1:8000/ml/scorer-stable",
        "COMPARATOR_CANDIDATE_URL": "http://127.0.0.1:8000/ml/scorer-canary/v1",
        "ROLLOUT_NAME": "scorer",
        "ELSEWHERE": "http://example.com:80",
    }
    assert through_dataplane(env, "") == env  # no data plane yet: left as it is
