"""modelrollout: progressive delivery of machine-learning models on Kubernetes."""

__version__ = "0.1.0"

GROUP = "modelrollout.io"
VERSION = "v1alpha1"
PLURAL = "modelrollouts"
KIND = "ModelRollout"
