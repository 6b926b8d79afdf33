import torch

from fbl.models import create_model
from fbl.models.normed_linear import NormedLinear


def test_logits_are_cosines_longhand():
    head = NormedLinear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    f = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    expected = torch.tensor([[1.0, 1 / 2**0.5], [0.0, 0.0]])
    assert torch.allclose(head(f), expected, atol=1e-6)


def test_create_model_with_normed_classifier():
    model = create_model("resnet20", num_classes=7, classifier="normed")
    assert isinstance(model.get_classifier(), NormedLinear)
    z = model(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 7) and z.abs().max() <= 1 + 1e-6
