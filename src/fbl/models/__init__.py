"""Backbones under one contract: ``forward_features`` -> pooled vector, ``forward_head`` -> logits.

``create_model(name, num_classes, **options)`` builds any registered model; importing this package
registers the CIFAR ResNets, the multi-expert ResNets, the digits CNN and the torchvision ResNets.
"""

from fbl.models._helpers import ForwardWithFeatures

# Imported for their @register_model side effect.
from fbl.models.cifar_resnet import CifarResNet
from fbl.models.classifier_retraining import ClassifierRetraining
from fbl.models.digits_cnn import DigitsCNN
from fbl.models.multi_expert_resnet import ExpertOutputs, MultiExpertResNet
from fbl.models.registry import MODELS, create_model, list_models, register_model
from fbl.models.torchvision_resnet import TorchvisionResNet

__all__ = [
    "ForwardWithFeatures",
    "MODELS",
    "create_model",
    "list_models",
    "register_model",
    "CifarResNet",
    "ClassifierRetraining",
    "DigitsCNN",
    "ExpertOutputs",
    "MultiExpertResNet",
    "TorchvisionResNet",
]
